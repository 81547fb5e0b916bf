from lmforge.plugins.models.transformer import Transformer, TransformerConfig
from lmforge.testing import ArchitectureContract


class TestTransformerContract(ArchitectureContract):
    component = Transformer
    config = TransformerConfig(n_layer=2, n_head=2, n_embd=32)
