"""Every extension point of lmforge, in the order a run meets them.

A plugin is a module (or an object) with functions marked ``@lmforge.hookimpl`` whose
names match the hooks below. It is found through the ``lmforge`` entry-point group of
an installed distribution::

    [project.entry-points.lmforge]
    gru = "lmforge_gru.plugin"

lmforge's own components in ``plugins/`` register through this same group and these
same hooks. A plugin implements only the hooks it needs, and may declare fewer
arguments than a hook offers.

Registration hooks hand the plugin a ``register`` callback. The host owns the policy
behind it: it records the distribution and version of every component, and it turns a
duplicate name into an error naming both distributions. These hooks are called once per
process, when plugins are first loaded; a plugin that raises in one of them is reported
as broken and its components are left out, while the rest keeps working.
"""

from lmforge import hookspec

# Registration hooks --------------------------------------------------------------------


@hookspec
def register_collectors(register):
    """Register collector classes: where documents come from.

    Called once at plugin load. Call ``register(cls)`` once per class; ``cls`` subclasses
    ``lmforge.contracts.Collector``, and ``cls.name`` becomes the option of the
    ``collector`` config group. Returns nothing.
    """


@hookspec
def register_preprocessors(register):
    """Register preprocessor classes: steps of the text pipeline.

    Called once at plugin load. Call ``register(cls)`` once per class; ``cls`` subclasses
    ``lmforge.contracts.Preprocessor``, and ``cls.name`` is the ``name`` a step uses in
    ``preprocess.steps``. Returns nothing.
    """


@hookspec
def register_tokenizers(register):
    """Register tokenizer classes.

    Called once at plugin load. Call ``register(cls)`` once per class; ``cls`` subclasses
    ``lmforge.contracts.Tokenizer``, and ``cls.name`` becomes the option of the
    ``tokenizer`` config group. Returns nothing.
    """


@hookspec
def register_models(register):
    """Register architectures: the options of the ``model`` config group.

    Called once at plugin load. Call ``register(cls)`` once per class; ``cls`` subclasses
    ``lmforge.contracts.Architecture`` and its ``objective`` (causal or masked) tells
    the trainer how to train it. Returns nothing.
    """


@hookspec
def register_tuners(register):
    """Register tuners: the ask-and-tell optimisers behind sweeps (``tuner`` group).

    Called once at plugin load. Call ``register(cls)`` once per class; ``cls`` subclasses
    ``lmforge.contracts.Tuner``. Returns nothing.
    """


@hookspec
def register_optimizers(register):
    """Register optimizers: the options of the ``optimizer`` config group.

    Called once at plugin load. Call ``register(cls)`` once per class; ``cls`` subclasses
    ``lmforge.contracts.Optimizer``, whose ``Config`` extends
    ``lmforge.contracts.OptimizerConfig`` (``lr`` and ``weight_decay``). Returns nothing.
    """


@hookspec
def register_schedulers(register):
    """Register learning-rate schedules: the options of the ``scheduler`` config group.

    Called once at plugin load. Call ``register(cls)`` once per class; ``cls`` subclasses
    ``lmforge.contracts.Scheduler``, whose ``Config`` extends
    ``lmforge.contracts.SchedulerConfig`` (``warmup_steps``). Returns nothing.
    """


@hookspec
def register_loggers(register):
    """Register experiment loggers: the options of the ``logger`` config group.

    Called once at plugin load. Call ``register(cls)`` once per class; ``cls`` subclasses
    ``lmforge.contracts.Logger``. Returns nothing.
    """


@hookspec
def register_tasks(register):
    """Register downstream tasks: the options of the ``task`` config group.

    Called once at plugin load. Call ``register(cls)`` once per class; ``cls`` subclasses
    ``lmforge.contracts.Task``, and ``cls.name`` becomes the option of ``task=<name>`` in
    ``lmforge finetune`` and ``lmforge eval --task``. Returns nothing.
    """


@hookspec
def register_guards(register):
    """Register guards: the options of the ``guard`` config group.

    Called once at plugin load. Call ``register(cls)`` once per class; ``cls`` subclasses
    ``lmforge.contracts.Guard``, and ``cls.name`` becomes the option of ``--guard <name>``
    in ``lmforge generate``, ``lmforge chat`` and ``lmforge serve`` (or ``guard.name`` in a
    fine-tuned run's config). Returns nothing.
    """


@hookspec
def register_commands(register):
    """Add sub-commands to the ``lmforge`` command line.

    Called once, when the CLI starts. Call ``register(name, function, help)`` per
    command; ``function(argv: list[str]) -> int`` receives the arguments after the
    command name and returns the exit status. Import heavy modules inside ``function``,
    since every ``lmforge`` invocation runs this hook. Returns nothing.
    """


# Config hooks --------------------------------------------------------------------------


@hookspec
def config_package():
    """Name the package that holds this plugin's config options.

    Called once at plugin load. Return a dotted package name, such as
    ``"lmforge_gru.conf"``, or None. The package's sub-folders are config groups
    (``model/``, ``collector/``, ``experiment/``...) holding YAML options, which are
    put on Hydra's search path: installing the plugin makes ``model=gru`` work, with no
    flag or environment variable. The package must contain an ``__init__.py`` and ship
    its YAML files as package data. Results of all plugins are collected.
    """


@hookspec
def register_hydra_plugins(register):
    """Register Hydra plugin classes (a ``Sweeper``, a ``Launcher``) with Hydra.

    Called once, when lmforge sets Hydra up for ``lmforge train``. Call
    ``register(cls, group=None, name=None, node=None)`` per class: ``cls`` is the plugin
    class, and ``group``/``name``/``node`` (``"hydra/sweeper"``, ``"lmforge"``, the
    plugin's config dataclass) store its config in Hydra's ConfigStore so that
    ``hydra/sweeper=lmforge`` selects it. Hydra instantiates only classes whose module
    is under ``hydra_plugins.``: set ``cls.__module__`` accordingly, as Hydra's own
    plugins are packaged. Returns nothing.
    """


@hookspec
def register_resolvers(register):
    """Register OmegaConf resolvers that configs may use, as ``${name:arg}``.

    Called once, when lmforge sets Hydra up, before any config is composed or resolved.
    Call ``register(name, function)`` per resolver; ``function`` receives the
    interpolation's arguments and returns the value (for example
    ``${compute.max_steps:1e11}``, the steps that spend a FLOP budget). A name another
    plugin registered already is an error naming both. Returns nothing.
    """


# Run-phase hooks -----------------------------------------------------------------------


@hookspec
def train_callbacks(run_dir):
    """Return extra Lightning callbacks for a training run, or None.

    Called once per ``lmforge train`` job, after the model is built and before the
    ``Trainer`` is created; ``run_dir`` is the job's output directory (a
    ``pathlib.Path``). Return a list of ``lightning.pytorch.Callback`` instances. Results
    of all plugins are collected and added after lmforge's own callbacks.
    """


@hookspec
def lm_eval_models():
    """Name lm-eval-harness models that score lmforge runs, or return None.

    Called when ``lmforge eval --lm-eval`` starts, before lm-eval looks its model up.
    Return a dict mapping a model name to an ``lm_eval.api.model.LM`` subclass, given as
    its import path ``"package.module:Class"`` so that nothing heavy is imported here.
    lmforge registers each with lm-eval's model registry; the class is built with
    ``pretrained=<run dir>``, ``checkpoint``, ``batch_size`` and ``device``. Results of
    all plugins are collected; ``--lm-eval`` scores with the one named ``lmforge``.
    """
