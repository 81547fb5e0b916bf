"""``task=translate``: (source, target) pairs with language tags, scored with BLEU and chrF.

The demo is real language pairs generated offline: numbers spelled out in two languages
by ``num2words`` ("two thousand and twenty-one" -> "dos mil veintiuno" for en -> es), in
the pair ``task.source_lang`` -> ``task.target_lang``. The baseline copies the source.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from lmforge import hookimpl
from lmforge.contracts import Example, Task, TaskConfig

DEMO_SMALL = 200  # 0..199 are all in the demo: the irregular words live there
DEMO_SIZE = 2000  # then numbers up to 9,999 drawn with a fixed seed
DEMO_MAX = 9999


@dataclass
class TranslateConfig(TaskConfig):
    source_lang: str = "en"  # language tag of the source, for the template and the demo
    target_lang: str = "es"  # language tag of the target

    def __post_init__(self) -> None:
        super().__post_init__()
        for key in ("source_lang", "target_lang"):
            if not str(getattr(self, key)).strip():
                raise ValueError(f"{key}='': must name a language; e.g. {key}=en")


def bleu_chrf(predictions: list[str], references: list[str]) -> dict[str, float]:
    """Corpus BLEU and chrF (sacrebleu's defaults), in [0, 100]."""
    import sacrebleu

    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    if not references:
        return {"bleu": 0.0, "chrf": 0.0}
    hyps, refs = [p.strip() for p in predictions], [[r.strip() for r in references]]
    return {"bleu": sacrebleu.corpus_bleu(hyps, refs).score, "chrf": sacrebleu.corpus_chrf(hyps, refs).score}


class Translate(Task):
    name = "translate"
    Config = TranslateConfig
    type = "generate"
    fields = ("source", "target")
    metrics = ("bleu", "chrf")

    def languages(self) -> dict[str, str]:
        return {"source_lang": self.config.source_lang, "target_lang": self.config.target_lang}

    def demo(self) -> list[dict[str, Any]]:
        try:
            from num2words import num2words
        except ImportError:
            from lmforge.errors import ConfigError

            raise ConfigError("task=translate's demo spells numbers with num2words, which is not installed: pip install num2words, or set task.data") from None
        numbers = list(range(DEMO_SMALL)) + sorted(random.Random(0).sample(range(DEMO_SMALL, DEMO_MAX + 1), DEMO_SIZE - DEMO_SMALL))
        out = []
        for key in ("source_lang", "target_lang"):
            try:
                num2words(1, lang=getattr(self.config, key))
            except NotImplementedError:
                from lmforge.errors import ConfigError

                raise ConfigError(f"task.{key}={getattr(self.config, key)}: num2words cannot spell numbers in it, so the demo cannot be built; pick a language num2words knows (en, es, fr, de, it, pt...) or set task.data") from None
        for n in numbers:
            out.append({"id": str(n), "source": num2words(n, lang=self.config.source_lang), "target": num2words(n, lang=self.config.target_lang)})
        return out

    def format(self, record: dict[str, Any]) -> Example:
        from lmforge.tasks import render_fields, template_of

        segments = render_fields(template_of(self), record, "target", extra=self.languages())
        return Example(str(record["id"]), segments, meta={"fields": {f: record[f] for f in self.fields}})

    def score(self, predictions: list[str], examples: list[Example]) -> dict[str, float]:
        return bleu_chrf(predictions, [e.reference for e in examples])

    def baseline(self, examples: list[Example]) -> list[str]:
        return [str(e.meta["fields"]["source"]) for e in examples]

    def cache_token(self) -> str:
        """The demo depends on num2words' spelling."""
        from importlib.metadata import PackageNotFoundError, version

        try:
            return "" if self.config.data else f"num2words-{version('num2words')}"
        except PackageNotFoundError:
            return ""


@hookimpl
def register_tasks(register):
    register(Translate)
