"""The family registry: Model.load finds a saved family by name, imports only what it needs, and
takes families from plugin packages through the ``llmasos.families`` entry points."""

from __future__ import annotations

import numpy as np
import pytest

from llmasos import Model, families
from llmasos.errors import FamilyError

from .conftest import run_python

pytestmark = pytest.mark.torch


def small(**metadata) -> Model:
    model = Model(input_dim=4, output_dim=3, framework="torch").add_layer("Dense", 3, activation="softmax")
    model.build(seed=0)
    model.metadata.update(metadata)
    return model


def test_unknown_family_names_it_and_the_known_ones(tmp_path):
    path = small(family="nope").save(tmp_path / "nope.h5")
    with pytest.raises(FamilyError) as err:
        Model.load(path)
    assert "'nope'" in str(err.value) and "bert, facenet, gpt2, marian, vit, wav2vec2" in str(err.value)


def test_registering_a_name_twice_raises_unless_it_is_the_listed_class():
    from llmasos.zoo.bert import Bert  # the zoo fills in its listed "llmasos.zoo.bert:Bert": no error

    assert families.register("bert", Bert) is Bert and families.get("bert") is Bert
    with pytest.raises(FamilyError, match="'bert' is registered twice"):
        families.register("bert", Model)


def test_plain_and_image_zoo_files_load_without_the_zoo(tmp_path):
    from llmasos import zoo

    small().save(tmp_path / "plain.h5")
    zoo.load("resnet_tiny", framework="torch", seed=0).save(tmp_path / "resnet.h5")
    result = run_python(f"""
        import sys
        from llmasos import Model
        for name in ("plain", "resnet"):
            model = Model.load({str(tmp_path)!r} + f"/{{name}}.h5")
            assert type(model) is Model, type(model)
        print(sorted(m for m in sys.modules if m.startswith("llmasos.zoo")))
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_a_text_family_file_loads_as_its_family(tmp_path):
    from llmasos import zoo

    bert = zoo.load("bert", framework="torch", seed=0, config={
        "hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 16,
        "vocab_size": 30, "max_position_embeddings": 16})
    bert.save(tmp_path / "bert.h5")
    result = run_python(f"""
        import sys
        from llmasos import Model
        model = Model.load({str(tmp_path)!r} + "/bert.h5")
        print(type(model).__module__, type(model).__name__, model.config.hidden_size)
        families = ("resnet", "vgg", "vit", "bert", "gpt2", "marian", "wav2vec2")
        print([f for f in families if "llmasos.zoo." + f in sys.modules])
    """)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["llmasos.zoo.bert", "Bert", "8"]
    assert lines[1] == "['bert']"           # the other families' modules stay unimported


def test_a_text_family_file_written_before_family_metadata_loads_as_its_family(tmp_path):
    """Files saved before the "family" key named their family only as "zoo": still that family."""
    from llmasos import zoo
    from llmasos.zoo.bert import Bert

    bert = zoo.load("bert", framework="torch", seed=0, config={
        "hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 16,
        "vocab_size": 30, "max_position_embeddings": 16})
    del bert.metadata["family"]
    bert.save(tmp_path / "old.h5")
    loaded = Model.load(tmp_path / "old.h5")
    assert type(loaded) is Bert and loaded.config.hidden_size == 8


def test_a_plugin_family_loads_through_its_entry_point(tmp_path, demo_plugin):
    weights = small(family="demo", greeting="hi from the plugin").save(tmp_path / "demo.h5")
    result = run_python(f"""
        import numpy as np
        from llmasos import Model, families
        model = Model.load({weights!r})
        print(type(model).__module__, type(model).__name__, model.greeting)
        print(families.known())
        np.save({str(tmp_path)!r} + "/out.npy", model.predict(np.eye(4, dtype=np.float32)))
    """, demo_plugin)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "llmasos_demo_plugin.family Demo hi from the plugin"
    assert lines[1] == "['bert', 'broken', 'demo', 'facenet', 'gpt2', 'marian', 'vit', 'wav2vec2']"
    # the saved weights came back: the same seed builds the same model here
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), small().predict(np.eye(4, dtype=np.float32)))


def test_a_broken_plugin_is_reported_by_name_and_breaks_nothing_else(demo_plugin):
    result = run_python("""
        import llmasos
        from llmasos import families
        from llmasos.errors import FamilyError
        try:
            families.get("broken")
        except FamilyError as err:
            print(err)
        assert families.get("demo").__name__ == "Demo" and families.get("bert").__name__ == "Bert"
    """, demo_plugin)
    assert result.returncode == 0, result.stderr
    message = result.stdout.strip()
    assert "'broken'" in message and "'llmasos-demo-plugin'" in message, message
    assert "llmasos_demo_plugin_missing_dependency" in message, message


def test_a_plugin_zoo_model_is_listed_loaded_and_trained_through_its_entry_point(demo_plugin):
    result = run_python("""
        import numpy as np
        from llmasos import Dataset, Optimizer, zoo
        from llmasos.errors import ZooError
        print([info.name for info in zoo.list() if info.family == "demo"])
        model = zoo.load("demo_tiny_cnn", framework="torch", num_classes=5, seed=0)
        x = np.random.default_rng(0).random((16, 1, 8, 8), dtype=np.float32)
        before = model.get_weights()["head"]["kernel"].copy()
        model.train(Dataset(x, np.arange(16) % 5), Optimizer("SGD", lr=0.1), epochs=1, batch_size=8)
        print(model.predict(x).shape, bool(np.abs(model.get_weights()["head"]["kernel"] - before).max() > 0))
        for name in ("demo_unregistered", "demo_broken"):
            try:
                zoo.load(name)
            except ZooError as err:
                print(err)
        print(zoo.registry.get("resnet18").family)
    """, demo_plugin)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:2] == ["['demo_tiny_cnn']", "(16, 5) True"], lines
    assert "'demo_unregistered'" in lines[2] and "llmasos.zoo.registry.register" in lines[2], lines[2]
    assert "'demo_broken'" in lines[3] and "llmasos_demo_plugin_missing_dependency" in lines[3], lines[3]
    assert "'llmasos-demo-plugin'" in lines[3] and lines[4] == "resnet", lines
