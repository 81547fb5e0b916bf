"""``lmforge explain``, as one built-in plugin.

==================  ==============================================================
``explain.py``      the command and its flags, registered by ``register_commands``
``_command.py``     open the run, read the text, pick the target, run the methods,
                    write ``<run dir>/explain/<slug>/`` atomically
``_methods.py``     attention, rollout, saliency, integrated gradients (adaptive) and
                    the logit lens, on token ids, through the ``Architecture`` contract
``_figures.py``     the PNG figures (matplotlib, Agg)
``_page.py``        the self-contained HTML page
==================  ==============================================================

Importing this package or ``explain.py`` imports neither torch nor matplotlib.
"""
