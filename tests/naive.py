"""Slow, obviously-correct NumPy transcription of SPEC.md.

Every backend and update path of sparseopt is tested against this module.
It shares no code with the package: the rules are transcribed again from
the specification's table.

A ``NaiveOptimizer`` holds a copy of the parameter and its state and offers
the three semantics of SPEC.md:

* ``dense(g)``: the dense rule with a full gradient;
* ``skip(rows, values)``: the dense rule on the (summed) touched rows only;
* the ``exact`` semantics is, by definition, ``dense`` fed with zero rows, so
  tests compare against ``dense(to_dense(rows, values))``.
"""

import numpy as np

DEFAULTS = {
    "SGD": dict(lr=0.01, weight_decay=0.0),
    "Momentum": dict(lr=0.01, momentum=0.9, nesterov=False, weight_decay=0.0),
    "AdaGrad": dict(lr=0.01, eps=1e-8, initial_accumulator_value=0.0, weight_decay=0.0),
    "RMSProp": dict(lr=0.001, rho=0.9, eps=1e-8, weight_decay=0.0),
    "Adam": dict(lr=0.001, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0),
}

STATE_NAMES = {"SGD": (), "Momentum": ("v",), "AdaGrad": ("G",), "RMSProp": ("E",), "Adam": ("m", "v")}


def _rule(name, hp, p, g, st, t):
    """One step of optimizer ``name`` on arrays ``p``, ``g`` and state dict ``st`` (in place)."""
    g = g + hp["weight_decay"] * p
    lr = hp["lr"]
    if name == "SGD":
        p -= lr * g
    elif name == "Momentum":
        st["v"][...] = hp["momentum"] * st["v"] + lr * g
        if hp["nesterov"]:
            p -= hp["momentum"] * st["v"] + lr * g
        else:
            p -= st["v"]
    elif name == "AdaGrad":
        st["G"] += g * g
        p -= lr * g / np.sqrt(st["G"] + hp["eps"])
    elif name == "RMSProp":
        st["E"][...] = hp["rho"] * st["E"] + (1 - hp["rho"]) * g * g
        p -= lr * g / np.sqrt(st["E"] + hp["eps"])
    elif name == "Adam":
        b1, b2 = hp["beta1"], hp["beta2"]
        st["m"][...] = b1 * st["m"] + (1 - b1) * g
        st["v"][...] = b2 * st["v"] + (1 - b2) * g * g
        m_hat = st["m"] / (1 - b1**t)
        v_hat = st["v"] / (1 - b2**t)
        p -= lr * m_hat / (np.sqrt(v_hat) + hp["eps"])
    else:
        raise ValueError(name)


class NaiveOptimizer:
    def __init__(self, name, W, **hyper):
        self.name = name
        self.hp = {**DEFAULTS[name], **hyper}
        self.p = np.array(W, copy=True)
        init = self.hp.get("initial_accumulator_value", 0.0)
        self.state = {s: np.full_like(self.p, init) for s in STATE_NAMES[name]}
        self.t = 0

    def to_dense(self, rows, values):
        """The dense gradient that ``step_rows(rows, values)`` stands for."""
        g = np.zeros_like(self.p)
        np.add.at(g, np.asarray(rows, dtype=np.int64), np.asarray(values, dtype=self.p.dtype))
        return g

    def dense(self, g):
        self.t += 1
        _rule(self.name, self.hp, self.p, np.asarray(g, dtype=self.p.dtype), self.state, self.t)

    def skip(self, rows, values):
        self.t += 1
        g = self.to_dense(rows, values)
        touched = np.unique(np.asarray(rows, dtype=np.int64))
        if touched.size == 0:
            return
        p = self.p[touched]
        st = {k: v[touched] for k, v in self.state.items()}
        _rule(self.name, self.hp, p, g[touched], st, self.t)
        self.p[touched] = p
        for k in st:
            self.state[k][touched] = st[k]
