"""The built-in optimizers, schedules and loggers pass the contract suites of their kinds."""

from lmforge.plugins.training.loggers import CSV, NoLogger, TensorBoard, Wandb, WandbConfig
from lmforge.plugins.training.optimizers import SGD, AdafactorConfig, Adafactor, AdamW, AdamWConfig, SGDConfig
from lmforge.plugins.training.schedulers import (
    WSD,
    Constant,
    ConstantConfig,
    Cosine,
    CosineConfig,
    Linear,
    LinearConfig,
    WSDConfig,
)
from lmforge.testing import LoggerContract, OptimizerContract, SchedulerContract


class TestAdamWContract(OptimizerContract):
    component = AdamW
    config = AdamWConfig(lr=1e-2)


class TestSGDContract(OptimizerContract):
    component = SGD
    config = SGDConfig(weight_decay=0.01)  # a non-zero decay, to see that the groups keep theirs


class TestAdafactorContract(OptimizerContract):
    component = Adafactor
    config = AdafactorConfig(weight_decay=0.01)


class TestCosineContract(SchedulerContract):
    component = Cosine
    config = CosineConfig(warmup_steps=50)


class TestLinearContract(SchedulerContract):
    component = Linear
    config = LinearConfig(warmup_steps=50, min_lr_ratio=0.1)


class TestConstantContract(SchedulerContract):
    component = Constant
    config = ConstantConfig(warmup_steps=50)


class TestWSDContract(SchedulerContract):
    component = WSD
    config = WSDConfig(warmup_steps=50)


class TestWSDLinearContract(SchedulerContract):
    component = WSD
    config = WSDConfig(warmup_steps=50, decay_fraction=1.0, decay_shape="linear")


class TestCSVContract(LoggerContract):
    component = CSV


class TestNoLoggerContract(LoggerContract):
    component = NoLogger


class TestTensorBoardContract(LoggerContract):
    component = TensorBoard


class TestWandbContract(LoggerContract):
    component = Wandb
    config = WandbConfig(mode="offline")  # never the network
