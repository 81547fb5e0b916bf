"""lmforge's sweeper where Hydra looks for plugins: ``hydra_plugins.lmforge_sweeper``.

Hydra instantiates a sweeper only from a module under the ``hydra_plugins`` namespace
(it checks the ``_target_`` and imports it), so this folder installs under that name
(``package-dir`` in ``pyproject.toml``), as Hydra's own plugins do. The sweeper itself
is ``lmforge.plugins.sweep.sweeper``; importing this module also stores its config as
``hydra/sweeper=lmforge``, so Hydra's own plugin discovery finds both.
"""

from hydra.core.config_store import ConfigStore

from lmforge.plugins.sweep.sweeper import LmforgeSweeper as _LmforgeSweeper
from lmforge.plugins.sweep.sweeper import LmforgeSweeperConf


class LmforgeSweeper(_LmforgeSweeper):
    __doc__ = _LmforgeSweeper.__doc__


ConfigStore.instance().store(group="hydra/sweeper", name="lmforge", node=LmforgeSweeperConf, provider="lmforge")
