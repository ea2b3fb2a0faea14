"""The model repository: which model versions serve, and how new ones are swapped in.

The layout is Triton's: ``repo/<model>/<version>/model.onnx`` (``config.pbtxt`` may sit beside the
versions; this server does not need it), or ``<version>/model.onnx/model.onnx`` for a model with
external data. A single ``.onnx`` file is a repository of one model with one version, ``1``.

Updating while serving: a version is loaded, warmed up, then published by replacing one dict, so
a request holds either the old version or the new one, and a request in flight finishes on the
version it started with. A version that fails to load is logged and the versions already serving
stay. Polling sees a folder's files, sizes and modification times; it loads a version only once
these are unchanged between two polls, and only if ``model.onnx`` parses. Writers should still
build a version folder elsewhere (or under a name that is not a number, such as ``.3.tmp``) and
rename it into place, which is atomic.

>>> VersionPolicy.parse("latest:2").candidates([1, 2, 3]), VersionPolicy.parse("1,3").limit
([3, 2, 1], None)
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ServeError
from .metrics import Metrics
from .version import ModelVersion

log = logging.getLogger("llmasos.serve")

Opener = Callable[[str, int, Path], ModelVersion]
Stamp = tuple  # (relative path, size, mtime_ns) of every file of a version


@dataclass(frozen=True)
class VersionPolicy:
    """Serve the ``latest`` N loadable versions (None: all), or exactly the ``specific`` ones."""

    latest: int | None = 1
    specific: tuple[int, ...] = ()

    @classmethod
    def parse(cls, value: str | int | Sequence[int] | VersionPolicy) -> VersionPolicy:
        """``"latest"``, ``"latest:N"``, ``"all"``, a version ``3``, or pinned ``"1,3"``/``[1, 3]``."""
        if isinstance(value, VersionPolicy):
            return value
        text = str(value).strip().lower() if isinstance(value, (str, int)) else None
        try:
            if text == "all":
                return cls(latest=None)
            if text is not None and text.startswith("latest"):
                count = int(text.partition(":")[2] or 1)
                if count < 1:
                    raise ValueError
                return cls(latest=count)
            versions = text.split(",") if text is not None else value
            return cls(latest=None, specific=tuple(sorted({int(v) for v in versions})))
        except (TypeError, ValueError):
            raise ServeError(f"version policy {value!r} is not 'latest', 'latest:N' (N >= 1), 'all', "
                             "a version number or a list of them") from None

    @property
    def limit(self) -> int | None:
        return self.latest if not self.specific else None

    def candidates(self, versions: Iterable[int]) -> list[int]:
        """Versions worth loading, newest first."""
        return sorted((v for v in versions if not self.specific or v in self.specific), reverse=True)


def model_file(root: Path) -> Path:
    """The ONNX file of a version: the file itself, ``model.onnx``, or ``model.onnx/model.onnx``."""
    if root.is_file():
        return root
    inner = root / "model.onnx"
    return inner / "model.onnx" if inner.is_dir() else inner


def _stamp(root: Path) -> Stamp | None:
    """What the version's files look like now; None while they are moving under us."""
    try:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        return tuple((str(p.relative_to(root.parent)), st.st_size, st.st_mtime_ns)
                     for p in files for st in [p.stat()])
    except FileNotFoundError:
        return None


class Repository:
    """Models found at ``path`` (a repository folder or one ``.onnx`` file), loaded by ``opener``.

    ``refresh()`` brings the served versions in line with the disk; ``load``/``unload`` do it for
    one model on request; ``get`` answers which version serves a request.
    """

    def __init__(self, path: Path, opener: Opener, metrics: Metrics, *, name: str | None = None,
                 policy: VersionPolicy = VersionPolicy()) -> None:
        self.path, self._open, self._metrics, self._policy = Path(path), opener, metrics, policy
        self._single = not self.path.is_dir()  # decided once: the file may vanish and return
        self._name = name or (self.path.stem if self._single else None)
        self._live: dict[str, dict[int, ModelVersion]] = {}  # replaced whole, never mutated
        self._stamps: dict[tuple[str, int], Stamp] = {}  # of the live versions
        self._seen: dict[tuple[str, int], tuple[Stamp, str | None]] = {}  # stamp, failure
        self._known: set[str] = set()
        self._unloaded: set[str] = set()
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None

    # -- reading (any thread, no lock: `_live` is swapped, never changed in place) -------------

    @property
    def names(self) -> list[str]:
        return sorted(self._live)

    def versions(self, name: str) -> list[int]:
        return sorted(self._live.get(name, ()))

    @property
    def ready(self) -> bool:
        """True when every model on disk, except those unloaded on request, is serving."""
        return bool(self._live) and all(n in self._live for n in self._known - self._unloaded)

    def get(self, name: str, version: str | None = None) -> ModelVersion:
        """The version that serves ``name`` (the newest when ``version`` is None)."""
        versions = self._live.get(name)
        if versions is None:
            if name in self._known:
                raise ServeError(f"model {name!r} is not loaded", 503)
            raise ServeError(f"unknown model {name!r}; serving {self.names}", 404)
        if version is None:
            return versions[max(versions)]
        if not version.isdigit() or int(version) not in versions:
            raise ServeError(f"model {name!r} has no version {version!r} loaded; loaded: "
                             f"{sorted(versions)}", 404)
        return versions[int(version)]

    def index(self) -> list[dict[str, Any]]:
        """Every model and version the repository knows, with its state (Triton's index format)."""
        seen = dict(self._seen)  # a snapshot: the poller may be changing it (the copy is atomic)
        rows = [{"name": name, "version": str(v), "state": "READY"}
                for name in self.names for v in self.versions(name)]
        rows += [{"name": name, "version": str(v), "state": "UNAVAILABLE", "reason": failure}
                 for (name, v), (_, failure) in sorted(seen.items()) if failure]
        rows += [{"name": name, "state": "UNAVAILABLE", "reason": "unloaded" if name in
                  self._unloaded else "no version loaded"} for name in sorted(self._known - set(self._live))]
        return rows

    # -- changing (serialised by the lock) --------------------------------------------------

    def _scan(self) -> dict[str, dict[int, Path]]:
        if self._single:
            return {self._name: {1: self.path}} if self.path.is_file() else {}
        found = {}
        for folder in sorted(self.path.iterdir()):
            if folder.is_dir() and not folder.name.startswith("."):
                versions = {int(v.name): v for v in folder.iterdir()
                            if v.is_dir() and v.name.isdigit() and model_file(v).is_file()}
                if versions:
                    found[folder.name] = versions
        return found

    def _version(self, name: str, version: int, root: Path, current: ModelVersion | None,
                 settle: bool, failures: list[str]) -> ModelVersion | None:
        """The loaded version for these files: the current one, a new one, or None."""
        key, stamp = (name, version), _stamp(root)
        if stamp is None or (current is not None and self._stamps.get(key) == stamp):
            return current
        seen = self._seen.get(key)
        if settle and (seen is None or seen[0] != stamp or seen[1] is not None):
            if seen is None or seen[0] != stamp:  # new bytes: load them if the next poll agrees
                self._seen[key] = (stamp, None)
            return current
        try:
            model = self._open(name, version, model_file(root))
        except Exception as exc:  # whatever went wrong, the versions already serving stay
            self._seen[key] = (stamp, f"{type(exc).__name__}: {exc}")
            failures.append(f"version {version}: {exc}")
            self._metrics.loads.labels(model=name, result="failure").inc()
            log.error("model version failed to load; the versions already serving stay",
                      extra={"model": name, "version": version, "error": str(exc)})
            return current
        self._seen.pop(key, None)
        self._stamps[key] = stamp
        self._metrics.loads.labels(model=name, result="success").inc()
        return model

    def _select(self, name: str, on_disk: dict[int, Path],
                settle: bool) -> tuple[dict[int, ModelVersion], list[str]]:
        current = self._live.get(name, {})
        chosen: dict[int, ModelVersion] = {}
        failures: list[str] = []
        for version in self._policy.candidates(on_disk):
            model = self._version(name, version, on_disk[version], current.get(version), settle, failures)
            if model is not None:
                chosen[version] = model
                if len(chosen) == self._policy.limit:
                    break
        return chosen, failures

    def _publish(self, name: str, chosen: dict[int, ModelVersion]) -> None:
        old = self._live.get(name, {})
        live = {n: v for n, v in self._live.items() if n != name}
        if chosen:
            live[name] = chosen
        self._live = live  # the swap: one assignment, seen whole by every reader
        for version in old.keys() - chosen.keys():
            self._stamps.pop((name, version), None)
            self._metrics.loaded.remove(name, str(version))
            log.info("model version unloaded", extra={"model": name, "version": version})
        for version, model in chosen.items():
            if old.get(version) is not model:
                self._metrics.loaded.labels(model=name, version=str(version)).set(1)
                log.info("model version serving", extra={"model": name, "version": version,
                                                         "providers": model.providers,
                                                         "batching": model.batcher is not None})

    def refresh(self, settle: bool = True) -> None:
        """Serve what the disk holds now; with ``settle``, only files unchanged since the last poll."""
        with self._lock:
            on_disk = self._scan()
            self._known = set(on_disk)
            # Forget what was seen of versions no longer on disk (they may come back as new bytes).
            self._seen = {key: seen for key, seen in self._seen.items() if key[1] in on_disk.get(key[0], ())}
            for name in sorted(self._known | set(self._live)):
                if name not in self._unloaded:
                    self._publish(name, self._select(name, on_disk.get(name, {}), settle)[0])

    def load(self, name: str) -> None:
        """(Re)load ``name`` from disk now; raises :class:`ServeError` if a wanted version fails."""
        with self._lock:
            on_disk = self._scan()
            self._known = set(on_disk)
            if name not in on_disk:
                raise ServeError(f"no model {name!r} in {self.path}", 404)
            self._unloaded.discard(name)
            chosen, failures = self._select(name, on_disk[name], settle=False)
            self._publish(name, chosen)
        if failures:
            raise ServeError(f"model {name!r} failed to load {'; '.join(failures)}; serving versions "
                             f"{sorted(chosen)}")

    def unload(self, name: str) -> None:
        """Stop serving ``name`` until it is loaded again (requests in flight finish)."""
        with self._lock:
            if name not in self._live and name not in self._known:
                raise ServeError(f"unknown model {name!r}", 404)
            self._unloaded.add(name)
            self._publish(name, {})

    # -- polling ------------------------------------------------------------------------------

    def start_polling(self, interval_s: float) -> None:
        """Refresh every ``interval_s`` seconds in a background thread (0: never)."""
        if interval_s <= 0 or self._poller is not None:
            return
        self._stop.clear()
        self._poller = threading.Thread(target=self._poll, args=(interval_s,), daemon=True,
                                        name="llmasos-repository-poll")
        self._poller.start()

    def _poll(self, interval_s: float) -> None:
        while not self._stop.wait(interval_s):
            try:
                self.refresh()
            except Exception as exc:  # e.g. the folder vanished: keep serving, try again next poll
                log.error("repository poll failed", extra={"path": str(self.path), "error": str(exc)})

    def stop_polling(self) -> None:
        self._stop.set()
        if self._poller is not None:
            self._poller.join()
            self._poller = None
