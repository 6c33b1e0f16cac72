"""Cases shared by the optimizer tests of every backend (CPU, CUDA)."""

import numpy as np
import pytest

NAMES = ["SGD", "Momentum", "AdaGrad", "RMSProp", "Adam"]
DTYPES = [np.float64, np.float32]

# hyperparameters that make every rule move noticeably in few steps
HYPER = {
    "SGD": dict(lr=0.05),
    "Momentum": dict(lr=0.05, momentum=0.8),
    "AdaGrad": dict(lr=0.1, initial_accumulator_value=0.1),
    "RMSProp": dict(lr=0.01, rho=0.8),
    "Adam": dict(lr=0.01, beta1=0.8, beta2=0.9),
}
# variants crossed with every test: plain, weight decay, nesterov
VARIANTS = [
    pytest.param(("SGD", {}), id="SGD"),
    pytest.param(("SGD", {"weight_decay": 0.1}), id="SGD-wd"),
    pytest.param(("Momentum", {}), id="Momentum"),
    pytest.param(("Momentum", {"weight_decay": 0.1}), id="Momentum-wd"),
    pytest.param(("Momentum", {"nesterov": True}), id="Momentum-nesterov"),
    pytest.param(("Momentum", {"nesterov": True, "weight_decay": 0.1}), id="Momentum-nesterov-wd"),
    pytest.param(("AdaGrad", {}), id="AdaGrad"),
    pytest.param(("AdaGrad", {"weight_decay": 0.1}), id="AdaGrad-wd"),
    pytest.param(("RMSProp", {}), id="RMSProp"),
    pytest.param(("RMSProp", {"weight_decay": 0.1}), id="RMSProp-wd"),
    pytest.param(("Adam", {}), id="Adam"),
    pytest.param(("Adam", {"weight_decay": 0.1}), id="Adam-wd"),
]
