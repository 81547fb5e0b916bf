from collections import Counter

from lmforge.contracts import Document
from lmforge.plugins.preprocessors.none import Identity
from lmforge.testing import PreprocessorContract


class TestIdentityContract(PreprocessorContract):
    component = Identity


def test_passes_documents_through_unchanged():
    docs = [Document("a", " x\r\n", "t"), Document("b", "", "t")]
    assert list(Identity().process(docs, Counter())) == docs
