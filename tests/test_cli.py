"""The ``lmforge`` command line outside of training."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from support import lmforge


def test_plugins_lists_components_and_options_without_importing_torch_or_spacy(tmp_path):
    code = (
        "import sys; from lmforge.cli import main; main(['plugins']);"
        "print('HEAVY', sorted(m for m in ('torch', 'spacy', 'lightning', 'tokenizers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True).stdout
    assert "HEAVY []" in out
    assert "lmforge 0." in out
    listed = {line.split()[0]: line.split(None, 1)[1] for line in out.splitlines() if line.startswith("  ")}
    assert "transformer" in listed["model"] and "stdlib" in listed["collector"]
    assert "model=transformer" in out and "experiment=gpt2_small" in out and "experiment=tiny" in out


def test_plugins_json_is_machine_readable(tmp_path):
    data = json.loads(lmforge("plugins", "--json", cwd=tmp_path).stdout)
    own = next(p for p in data["plugins"] if p["distribution"] == "lmforge")
    assert {"bpe", "byte", "unigram", "word", "wordpiece"} <= set(own["components"]["tokenizer"])
    assert "normalize" in own["options"]["preprocess"]
    assert data["broken"] == []


def test_usage_and_unknown_commands(tmp_path):
    assert "train [overrides]" in lmforge(cwd=tmp_path).stdout
    proc = lmforge("trian", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "unknown command 'trian'" in proc.stderr and "train" in proc.stderr


def test_a_plugin_can_add_a_command(make_dist, capsys):
    from lmforge.cli import main

    code = (
        "from lmforge import hookimpl\n\n"
        "def hello(argv):\n    print('hello', *argv)\n    return 0\n\n"
        "@hookimpl\ndef register_commands(register):\n    register('hello', hello, 'say hello')\n"
    )
    make_dist("lmforge-hello", {"hello": "lmforge_hello"}, {"lmforge_hello.py": code})
    assert main(["hello", "world"]) == 0
    assert "hello world" in capsys.readouterr().out
    main([])
    assert "say hello (lmforge-hello 1.0)" in capsys.readouterr().out


def test_selecting_a_component_of_a_broken_plugin_is_a_clear_error(make_dist, capsys):
    from lmforge.cli import main

    make_dist("lmforge-gru", {"gru": "lmforge_gru"}, {"lmforge_gru.py": "raise ImportError('needs libfoo')\n"}, "0.3")
    with pytest.warns(UserWarning, match="lmforge-gru 0.3"):
        status = main(["train", "model=gru"])
    err = capsys.readouterr().err
    assert status == 2
    assert "model=gru: plugin 'gru' from lmforge-gru 0.3 failed to load (ImportError: needs libfoo)" in err


def test_a_duplicate_plugin_is_an_error_without_a_traceback(make_dist, capsys):
    from lmforge.cli import main

    code = "from lmforge import hookimpl\nfrom lmforge.plugins.collectors.stdlib import Stdlib\n\nclass Copy(Stdlib):\n    pass\n\n@hookimpl\ndef register_collectors(register):\n    register(Copy)\n"
    make_dist("lmforge-copy", {"copy": "lmforge_copy"}, {"lmforge_copy.py": code})
    assert main(["plugins"]) == 2
    assert "collector 'stdlib' is registered twice: by lmforge" in capsys.readouterr().err


def test_a_plugin_cannot_take_a_builtin_command(make_dist):
    code = "from lmforge import hookimpl\n\n@hookimpl\ndef register_commands(register):\n    register(name='train', function=print, help='x')\n"
    make_dist("lmforge-thief", {"thief": "lmforge_thief"}, {"lmforge_thief.py": code})
    with pytest.warns(UserWarning, match="lmforge-thief.*registers command 'train'"):
        from lmforge.loader import load_plugins

        _, registry = load_plugins()
    assert "train" not in registry.commands


GRU = """
from lmforge import hookimpl
from lmforge.plugins.models.rnn import RNN

class GRU(RNN):
    name = "gru"

@hookimpl
def register_models(register):
    register(GRU)
"""


def test_with_autoload_off_an_installed_plugin_choice_names_the_switch(make_dist, monkeypatch, capsys):
    from lmforge.cli import main

    make_dist("lmforge-gru", {"gru": "lmforge_gru"}, {"lmforge_gru.py": GRU}, "0.3")
    monkeypatch.setenv("LMFORGE_DISABLE_PLUGIN_AUTOLOAD", "1")
    assert main(["train", "model=gru"]) == 2
    err = capsys.readouterr().err
    assert "model=gru: no model named 'gru'" in err and "LMFORGE_DISABLE_PLUGIN_AUTOLOAD" in err and "lmforge-gru 0.3" in err


def test_a_duplicate_name_is_shown_by_plugins_and_refused_by_train(make_dist, capsys):
    from lmforge.cli import main

    make_dist("lmforge-copy", {"copy": "lmforge_rnncopy"}, {"lmforge_rnncopy.py": GRU.replace('name = "gru"', 'name = "rnn"')})
    assert main(["plugins"]) == 2
    captured = capsys.readouterr()
    assert "lmforge-copy 1.0\n  model       rnn (CONFLICT: also registered by lmforge " in captured.out  # the listing still shows
    assert "model 'rnn' is registered twice" in captured.err
    assert main(["train", "model=transformer"]) == 2
    assert "model 'rnn' is registered twice" in capsys.readouterr().err


def test_a_broken_plugin_is_one_line_without_python_source(tmp_path):
    site = tmp_path / "site"
    info = site / "lmforge_broken-1.0.dist-info"
    info.mkdir(parents=True)
    (site / "lmforge_broken.py").write_text("import no_such_module_xyz\n")
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: lmforge-broken\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[lmforge]\nbroken = lmforge_broken\n")
    env = {k: v for k, v in os.environ.items() if k not in ("LMFORGE_DISABLE_PLUGIN_AUTOLOAD", "PYTHONWARNINGS")}
    proc = subprocess.run([sys.executable, "-m", "lmforge.cli", "plugins"], cwd=tmp_path, env={**env, "PYTHONPATH": str(site)}, capture_output=True, text=True)
    assert proc.returncode == 0
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("lmforge: warning: lmforge plugin 'broken' from lmforge-broken 1.0 failed to load"), proc.stderr


def test_eval_is_reserved_like_train_and_plugins(make_dist):
    code = "from lmforge import hookimpl\n\n@hookimpl\ndef register_commands(register):\n    register(name='eval', function=print, help='x')\n"
    make_dist("lmforge-evil", {"evil": "lmforge_evil"}, {"lmforge_evil.py": code})
    with pytest.warns(UserWarning, match="lmforge-evil.*registers command 'eval'"):
        from lmforge.loader import load_plugins

        _, registry = load_plugins()
    assert "eval" not in registry.commands
