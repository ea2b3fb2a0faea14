"""Layers from plugin packages (entry point group ``llmasos.layers``): the pip-installed demo
plugin's ``DemoHighway`` is found by name in ``add_layer`` with no import by hand, trains to the
same numbers in torch and TensorFlow, and a ``.h5`` using it loads in a fresh process; a layer whose
plugin cannot import is reported by name and breaks nothing else."""

from __future__ import annotations

import json

import numpy as np
import pytest

from llmasos import Model
from llmasos.errors import ModelFileError, UnknownLayerError

from .conftest import run_python

pytestmark = [pytest.mark.torch, pytest.mark.tf]


def test_a_plugin_layer_is_found_by_name_and_trains_the_same_in_both_frameworks(demo_plugin, digits, tmp_path):
    np.save(tmp_path / "x.npy", digits[0][:128])
    np.save(tmp_path / "y.npy", digits[1][:128])
    result = run_python(f"""
        import json, sys
        import numpy as np
        from llmasos import Dataset, Model, Optimizer
        folder = {str(tmp_path)!r}
        x, y = np.load(folder + "/x.npy"), np.load(folder + "/y.npy")
        before = "llmasos_demo_plugin.layers" in sys.modules

        def model(framework):
            m = Model(input_dim=64, output_dim=10, framework=framework)
            m.add_layer("DemoHighway", gate_bias=-0.5, name="highway").add_layer("Dense", 10, activation="softmax")
            return m.build(seed=0)

        start = model("torch").get_weights()
        out = {{"imported_before": before, "imported_after": "llmasos_demo_plugin.layers" in sys.modules}}
        for framework in ("torch", "tf"):
            m = model(framework)
            m.set_weights(start)
            history = m.train(Dataset(x, y), Optimizer("Adam", lr=0.01), epochs=2, batch_size=32, seed=0)
            weights = m.get_weights()
            out[framework] = {{"loss": history["loss"],
                              "weights": {{f"{{layer}}/{{name}}": value.tolist() for layer, named in weights.items()
                                          for name, value in named.items()}}}}
            if framework == "torch":
                m.save(folder + "/highway.h5")
                np.save(folder + "/predicted.npy", m.predict(x))
        out["moved"] = float(np.abs(weights["highway"]["gate_kernel"] - start["highway"]["gate_kernel"]).max())
        print(json.dumps(out))
    """, demo_plugin)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.splitlines()[-1])
    assert out["imported_before"] is False and out["imported_after"] is True
    torch_run, tf_run = out["torch"], out["tf"]
    assert torch_run["loss"][-1] < torch_run["loss"][0]
    np.testing.assert_allclose(tf_run["loss"], torch_run["loss"], rtol=1e-5)
    assert out["moved"] > 1e-2            # 8 Adam steps did train the plugin's layer
    for name, value in torch_run["weights"].items():
        np.testing.assert_allclose(tf_run["weights"][name], value, atol=1e-5, rtol=0, err_msg=name)

    # the .h5 names the layer; a fresh process with the plugin installed loads it, in either framework
    loaded = run_python(f"""
        import json
        import numpy as np
        from llmasos import Model
        folder = {str(tmp_path)!r}
        x = np.load(folder + "/x.npy")
        for framework in ("torch", "tf"):
            model = Model.load(folder + "/highway.h5", framework=framework)
            diff = float(np.abs(model.predict(x) - np.load(folder + "/predicted.npy")).max())
            print(json.dumps([model.spec.layers[0].kind, model.spec.layers[0].config, diff]))
    """, demo_plugin)
    assert loaded.returncode == 0, loaded.stderr
    for line in loaded.stdout.splitlines()[-2:]:
        kind, config, diff = json.loads(line)
        assert (kind, config) == ("DemoHighway", {"gate_bias": -0.5}) and diff <= 1e-5, line
    # without the plugin, this process does not know the layer and says which one
    with pytest.raises(ModelFileError, match=r"layer 'highway' is a 'DemoHighway', which is neither built in "
                                        r"nor registered.*entry point group 'llmasos.layers'"):
        Model.load(tmp_path / "highway.h5")


def test_a_broken_layer_plugin_is_reported_by_name_and_breaks_nothing_else(demo_plugin):
    result = run_python("""
        import numpy as np
        import llmasos
        from llmasos import Model
        from llmasos.errors import ModelFileError, UnknownLayerError
        model = Model(input_dim=4, output_dim=2, framework="torch")
        try:
            model.add_layer("BrokenLayer")
        except UnknownLayerError as err:
            print(err)
        model.add_layer("DemoHighway").add_layer("Dense", 2, activation="softmax")
        print([layer.kind for layer in model.spec.layers], model.predict(np.ones((1, 4), np.float32)).shape)
    """, demo_plugin)
    assert result.returncode == 0, result.stderr
    message, kinds = result.stdout.strip().splitlines()
    assert message.startswith("layer 'BrokenLayer' (entry point BrokenLayer = "
                              "'llmasos_demo_plugin.broken_layer:BrokenLayer' of the distribution "
                              "'llmasos-demo-plugin') failed to load: ModuleNotFoundError"), message
    assert "llmasos_demo_plugin_missing_layer_dependency" in message, message
    assert kinds == "['DemoHighway', 'Dense'] (1, 2)"


def test_an_unknown_layer_says_a_plugin_package_may_declare_it():
    with pytest.raises(UnknownLayerError, match=r"unknown layer 'NoSuchLayer'.*install the plugin package that "
                                                r"declares it \(entry point group 'llmasos.layers'\)"):
        Model(input_dim=4, output_dim=2).add_layer("NoSuchLayer", 2)
