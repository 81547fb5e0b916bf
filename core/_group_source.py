"""A Hydra config source that serves one config group from a package of its own.

lmforge keeps experiment presets in the top-level ``experiments/`` package rather than
in ``conf/experiment/``. Hydra looks a group up as a sub-folder of a search-path root,
so this source presents ``lmforge.experiments`` as the ``experiment`` group of a
virtual root. Search-path form: ``pkggroup://experiment=lmforge.experiments``.
"""

from __future__ import annotations

import importlib.resources as resources
from typing import List, Optional

from hydra.core.object_type import ObjectType
from hydra.plugins.config_source import ConfigLoadError, ConfigResult, ConfigSource


class GroupPackageConfigSource(ConfigSource):
    def __init__(self, provider: str, path: str) -> None:
        super().__init__(provider=provider, path=path)
        self.group, _, self.package = self.path.partition("=")

    @staticmethod
    def scheme() -> str:
        return "pkggroup"

    def _resource(self, config_path: str):
        """The package resource behind ``config_path``, or None outside the group."""
        head, _, rest = config_path.strip("/").partition("/")
        if head != self.group:
            return None
        root = resources.files(self.package)
        return root.joinpath(rest) if rest else root

    def available(self) -> bool:
        try:
            return resources.files(self.package).joinpath("__init__.py").is_file()
        except (ModuleNotFoundError, TypeError, ValueError):
            return False

    def load_config(self, config_path: str) -> ConfigResult:
        res = self._resource(self._normalize_file_name(config_path))
        if res is None or not res.is_file():
            raise ConfigLoadError(f"Config not found : {config_path}")
        from omegaconf import OmegaConf

        with res.open(encoding="utf-8") as f:
            text = f.read()
        return ConfigResult(
            config=OmegaConf.create(text) if text.strip() else OmegaConf.create({}),
            path=f"{self.scheme()}://{self.path}",
            provider=self.provider,
            header=ConfigSource._get_header_dict(text),
        )

    def is_group(self, config_path: str) -> bool:
        if config_path.strip("/") == "":
            return True
        res = self._resource(config_path)
        return bool(res is not None and res.is_dir())

    def is_config(self, config_path: str) -> bool:
        res = self._resource(self._normalize_file_name(config_path))
        return bool(res is not None and res.is_file())

    def list(self, config_path: str, results_filter: Optional[ObjectType]) -> List[str]:
        if config_path.strip("/") == "":
            return [self.group] if results_filter in (None, ObjectType.GROUP) else []
        res = self._resource(config_path)
        if res is None or not res.is_dir():
            return []
        files: List[str] = []
        for item in res.iterdir():
            if item.name.endswith(".yaml") or item.is_dir():
                self._list_add_result(files, f"{config_path}/{item.name}", item.name, results_filter)
        return sorted(set(files))
