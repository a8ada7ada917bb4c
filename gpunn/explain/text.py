"""A :class:`gpunn.explain.step.Step` written out in the tutorial's notation, for a terminal 100 columns wide.

Six parts, each layer by layer and neuron by neuron: the forward pass (``v = x1·w1 +
x2·w2 + b = ...``, ``y = σ(v) = ...``) and the answer, the error, the backward pass (each
δ with its chain-rule factors), the gradients, the update ``W(k+1) = W(k) - η·∂E/∂W`` and
the error after it, and the finite-difference check.

Numbers are shown to :data:`DIGITS` significant digits (``--json`` has them all).  A
line that would be wider than :data:`WIDTH` is summarised instead: a neuron with 784
inputs shows its result, then its largest terms and the count and sum of the rest.
"""

from __future__ import annotations

import math

import numpy as np

from gpunn.explain.step import FD_FLOOR, FD_STEP, Step, neuron_names, parameter_name

WIDTH = 100
DIGITS = 4
#: A disagreement with the finite differences above this counts as a failed check.
FD_TOLERANCE = 1e-6
INDENT = "  "
#: A neuron with at most this many inputs has each of its parameters on a line of its own if need be.
LISTED = 8
#: Characters of the input picture, from dark to bright.
SHADES = " .:-=+*#%@"

ACTIVATION_FORMULA = {"sigmoid": "σ(v) = 1/(1 + e^-v)", "tanh": "tanh(v)", "relu": "max(0, v)",
                      "identity": "v", "softmax": "e^v / Σ e^v (softmax)"}
ERROR_FORMULA = {"quadratic": "E = Σ ½(t - y)²", "cross_entropy": "E = -Σ ln(t·y + (1 - t)(1 - y))",
                 "softmax_cross_entropy": "E = -ln p, p the output of the target class",
                 "squared_error": "E = Σ ½(t - y)², y = v (identity outputs: regression)"}
OUTPUT_DELTA = {"quadratic": "δ = ∂E/∂y · ∂y/∂v = (y - t) · y(1 - y)",
                "cross_entropy": "δ = ∂E/∂y · ∂y/∂v = y - t (the sigmoid's slope cancels out)",
                "softmax_cross_entropy": "δ = ∂E/∂v = p - t",
                "squared_error": "δ = ∂E/∂y · ∂y/∂v = (y - t) · 1"}
DERIVATIVE = {"sigmoid": "σ'(v) = y(1 - y)", "tanh": "tanh'(v) = 1 - y²", "relu": "relu'(v) = 1 if v > 0, else 0",
              "identity": "f'(v) = 1"}


def num(value: float) -> str:
    """A number to DIGITS significant digits (no minus sign on a zero)."""
    text = f"{float(value):.{DIGITS}g}"
    return "0" if text in ("-0", "0") else text


def factor(value: float) -> str:
    """A number as a factor of a product: negative ones in parentheses."""
    text = num(value)
    return f"({text})" if text.startswith("-") else text


def render(step: Step, source: str | None = None, label: int | None = None) -> list[str]:
    """The step as lines of text at most WIDTH wide; ``source`` and ``label`` (the index of the true
    class) describe a real sample."""
    lines = _header(step, source)
    lines += _sample(step, label)
    lines += _forward(step, label)
    lines += _error(step)
    lines += _backward(step)
    lines += _gradients(step)
    lines += _update(step)
    lines += _check(step)
    return lines


# -- the parts -------------------------------------------------------------------------------
def _header(step: Step, source) -> list[str]:
    sizes = "-".join(map(str, step.sizes))
    hidden = f"hidden layers: {step.activation}, y = {ACTIVATION_FORMULA[step.activation]}   " \
        if len(step.sizes) > 2 else ""
    lines = [f"One training step of a {sizes} network, with its numbers"]
    if source:
        lines.append(f"{INDENT}on {source}")
    lines += [f"{INDENT}{hidden}outputs: {step.output_activation}   error: {step.loss}",
              f"{INDENT}learning rate η = {num(step.lr)}; float64 on NumPy; {DIGITS} digits shown "
              f"(--json has them all)"]
    return [_clip(line) for line in lines]


def _sample(step: Step, label) -> list[str]:
    lines = [""]
    lines += _values_line("input ", neuron_names(step.sizes, 0), step.x)
    side = math.isqrt(step.x.size)
    if side * side == step.x.size and side >= 8:
        lines += [f"{INDENT}as a {side}x{side} picture:"] + _picture(step.x, side)
    outputs = neuron_names(step.sizes, len(step.sizes) - 1)
    one_hot = np.isin(step.t, (0, 1)).all() and step.t.sum() == 1
    if one_hot and step.t.size > 4:
        k = int(np.argmax(step.t))
        lines.append(f"target  class {step.class_name(k)}: t = 1 at {outputs[k]}, 0 at the other outputs")
    else:
        lines += _values_line("target", [f"t{name[1:]}" for name in outputs], step.t)
    return lines


def _forward(step: Step, label) -> list[str]:
    lines = ["", "1. Forward pass: each neuron adds up its weighted inputs and its bias, v = Σ x·w + b, "
                 "and fires"]
    names_in = neuron_names(step.sizes, 0)
    y_in = step.x
    last = len(step.layers) - 1
    for index, layer in enumerate(step.layers):
        kind = step.output_activation if index == last else step.activation
        names = neuron_names(step.sizes, index + 1)
        role = "output" if index == last else "hidden"
        lines.append(f"layer {index + 1}: {len(names)} {role} neurons, y = {ACTIVATION_FORMULA[kind]}")
        total = None
        if kind == "softmax":
            exps = np.exp(layer.v)
            total = float(exps.sum()) if np.isfinite(exps).all() else None
            if total is not None:
                lines.append(f"{INDENT}Σ e^v = {_sum_of(exps)}")
        for j, name in enumerate(names):
            terms = [(y_in[i], layer.W[i, j], names_in[i]) for i in range(len(names_in))]
            result = f"{num(layer.v[j])}   y = {_activation(kind, layer.v[j], layer.y[j], total)}"
            lines += _sum_line(lambda sum_, name=name, result=result: f"{name:<5} v = {sum_} = {result}",
                               f"{name:<5} v = {result}", "v", terms, layer.b[j])
        names_in, y_in = names, layer.y
    lines.append(_answer(step, label))
    return lines


def _answer(step: Step, label) -> str:
    y = step.layers[-1].y
    names = neuron_names(step.sizes, len(step.sizes) - 1)
    k = step.answer
    if y.size == 1:
        text = f"answer: the only output, {names[0]}, says y = {num(y[0])}"
    else:
        text = (f"answer: {names[k]} is the most active output (y = {num(y[k])}), so the network says "
                f"{step.class_name(k)}")
    if label is not None:
        text += f"; the true label is {step.class_name(label)}: " + ("right" if label == k else "wrong")
    return _clip(text)


def _error(step: Step) -> list[str]:
    lines = ["", f"2. Error: {ERROR_FORMULA[_objective(step)]}"]
    names = neuron_names(step.sizes, len(step.sizes) - 1)
    y, t = step.layers[-1].y, step.t
    objective = _objective(step)
    for j, name in enumerate(names):
        if objective in ("quadratic", "squared_error"):
            term = f"½({num(t[j])} - {num(y[j])})²"
        elif objective == "cross_entropy":
            term = f"-ln({num(y[j])})" if t[j] == 1 else f"-ln(1 - {num(y[j])})"
        elif t[j] == 1:
            term = f"-ln p = -ln({num(y[j])})"
        else:
            continue  # softmax: only the target class adds to the error
        lines.append(f"{INDENT}{name:<5} {term} = {num(step.errors[j])}")
    several = len(step.errors) > 1 and objective != "softmax_cross_entropy"
    lines.append(_clip(f"{INDENT}E = {_sum_of(step.errors) if several else num(step.error)}"))
    return lines


def _backward(step: Step) -> list[str]:
    lines = ["", "3. Backward pass: each neuron's δ = ∂E/∂v, by the chain rule, from the outputs back"]
    objective = _objective(step)
    last = len(step.layers) - 1
    out = step.layers[-1]
    lines.append(f"layer {last + 1} (output): {OUTPUT_DELTA[objective]}")
    for j, name in enumerate(neuron_names(step.sizes, last + 1)):
        y, t, delta = out.y[j], step.t[j], out.delta[j]
        if objective == "quadratic":
            slope = y * (1 - y)
            text = f"δ = ({num(y)} - {num(t)}) · {num(y)}·(1 - {num(y)}) = {factor(y - t)} · {num(slope)}"
        else:
            text = f"δ = {num(y)} - {num(t)}"
        lines.append(_clip(f"{INDENT}{name:<5} {text} = {num(delta)}"))
    for index in range(last - 1, -1, -1):
        layer, above = step.layers[index], step.layers[index + 1]
        names_above = neuron_names(step.sizes, index + 2)
        lines.append(_clip(f"layer {index + 1} (hidden): δ = ∂E/∂y · ∂y/∂v = (Σ w·δ over the neurons it feeds) "
                           f"· f'(v)"))
        lines.append(f"{INDENT}with {DERIVATIVE[step.activation]}")
        for j, name in enumerate(neuron_names(step.sizes, index + 1)):
            terms = [(above.W[j, k], above.delta[k], names_above[k]) for k in range(len(names_above))]
            back = float(above.W[j] @ above.delta)
            slope = _derivative(step.activation, layer.y[j])
            result = f"· {_derivative_text(step.activation, layer.y[j])} = {factor(back)} · {num(slope)} " \
                     f"= {num(layer.delta[j])}"
            lines += _sum_line(lambda sum_, name=name, result=result: f"{name:<5} δ = ({sum_}) {result}",
                               f"{name:<5} δ = (Σ w·δ) {result}", "Σ w·δ", terms)
    return lines


def _gradients(step: Step) -> list[str]:
    lines = ["", "4. Gradients: ∂E/∂w = (the value w multiplies) · δ of its neuron, ∂E/∂b = δ"]
    y_in = step.x
    for index, layer in enumerate(step.layers):
        names_in = neuron_names(step.sizes, index)
        lines.append(f"layer {index + 1}")
        neurons = []
        for j, name in enumerate(neuron_names(step.sizes, index + 1)):
            items = [(f"w({names_in[i]}): {factor(y_in[i])}·{factor(layer.delta[j])} = {num(layer.grad_W[i, j])}",
                      abs(layer.grad_W[i, j])) for i in range(len(names_in))]
            neurons.append((name, items, f"b: {num(layer.grad_b[j])}"))
        lines += _items_block(neurons, "smaller")
        y_in = layer.y
    return lines


def _update(step: Step) -> list[str]:
    lines = ["", f"5. Update: W(k+1) = W(k) - η·∂E/∂W, with η = {num(step.lr)}"]
    eta = num(step.lr)
    for index, layer in enumerate(step.layers):
        names_in = neuron_names(step.sizes, index)
        lines.append(f"layer {index + 1}")
        neurons = []
        for j, name in enumerate(neuron_names(step.sizes, index + 1)):
            items = [(f"w({names_in[i]}): {num(layer.W[i, j])} - {eta}·{factor(layer.grad_W[i, j])} "
                      f"= {num(layer.W_next[i, j])}", abs(layer.grad_W[i, j])) for i in range(len(names_in))]
            bias = f"b: {num(layer.b[j])} - {eta}·{factor(layer.grad_b[j])} = {num(layer.b_next[j])}"
            neurons.append((name, items, bias))
        lines += _items_block(neurons, "moved less")
    change = step.error_after - step.error
    lines.append(f"error after the step: E = {num(step.error_after)} (before: {num(step.error)}), "
                 + (f"down by {num(-change)}: the step went downhill" if change < 0 else f"UP by {num(change)}"))
    if change >= 0:
        lines.append(f"{INDENT}η = {num(step.lr)} is too large a step here: the slope changes within it; "
                     f"try a smaller --lr")
    return lines


def _check(step: Step) -> list[str]:
    checked = step.fd_checked.size
    which = f"all {checked}" if checked == step.n_params else f"{checked} (at random) of the {step.n_params}"
    worst = step.fd_max_rel_err
    verdict = "backprop agrees" if worst <= FD_TOLERANCE else \
        f"more than {FD_TOLERANCE:g}: backprop disagrees"
    return ["", f"6. Check: every ∂E/∂w against the central difference (E(w + h) - E(w - h)) / 2h, "
                f"h = {FD_STEP:g},",
            f"   by the relative difference |g - fd| / max(|g|, |fd|, {FD_FLOOR:g}·max(1, E))",
            _clip(f"{INDENT}{which} parameters: the worst is {worst:.2g}, at "
                  f"{parameter_name(step.sizes, step.fd_worst)}: {verdict}")]


# -- pieces ----------------------------------------------------------------------------------
def _objective(step: Step) -> str:
    if step.output_activation == "softmax":
        return "softmax_cross_entropy"
    if step.output_activation == "identity":
        return "squared_error"
    return step.loss


def _activation(kind: str, v: float, y: float, softmax_total) -> str:
    if kind == "sigmoid":
        return f"σ({num(v)}) = {num(y)}"
    if kind == "tanh":
        return f"tanh({num(v)}) = {num(y)}"
    if kind == "relu":
        return f"max(0, {num(v)}) = {num(y)}"
    if kind == "identity":
        return f"{num(v)}"
    if softmax_total is None:
        return f"softmax = {num(y)}"
    return f"e^{factor(v)} / {num(softmax_total)} = {num(y)}"


def _derivative(kind: str, y: float) -> float:
    return {"sigmoid": y * (1 - y), "tanh": 1 - y * y, "relu": float(y > 0), "identity": 1.0}[kind]


def _derivative_text(kind: str, y: float) -> str:
    if kind == "sigmoid":
        return f"{num(y)}·(1 - {num(y)})"
    if kind == "tanh":
        return f"(1 - {factor(y)}²)"
    return "1" if y > 0 else "0 (y = 0)"


def _sum_line(full, short: str, label: str, terms, bias=None) -> list[str]:
    """A neuron's line with its sum written out, ``full(expression)``, when that fits; else two
    lines: ``short`` (the sum's value only), then ``label = `` the largest terms, the count and sum
    of the others, and the bias."""
    expression = " + ".join(f"{factor(a)}·{factor(b)}" for a, b, _ in terms)
    if bias is not None:
        expression += f" + {factor(bias)}"
    line = INDENT + full(expression)
    if len(line) <= WIDTH:
        return [line]
    lead = INDENT * 4 + f"{label} = "
    products = np.array([a * b for a, b, _ in terms])
    tail = (f" + b {factor(bias)}" if bias is not None else "") + f" = {num(products.sum() + (bias or 0.0))}"
    order = np.argsort(-np.abs(products), kind="stable")
    for k in range(min(len(terms), 8), 0, -1):
        shown = sorted(order[:k])
        text = " + ".join(f"{factor(terms[i][0])}·{factor(terms[i][1])} ({terms[i][2]})" for i in shown)
        if k < len(terms):
            text += f" + {len(terms) - k} more (sum {num(products.sum() - products[shown].sum())})"
        if len(lead + text + tail) <= WIDTH:
            return [_clip(INDENT + short), lead + text + tail]
    return [_clip(INDENT + short), _clip(lead + f"a sum of {len(terms)} terms" + tail)]


def _items_block(neurons, what: str) -> list[str]:
    """A layer's parameters, given as (neuron, [(text, weight), ...], bias text) per neuron: one line
    per neuron when every neuron's fits; else one line per parameter when a neuron has at most
    :data:`LISTED` inputs; else per neuron, those of largest weight and the count of the others."""
    prefixes = [f"{INDENT}{name:<5} " for name, _, _ in neurons]
    lines = [prefix + "   ".join([text for text, _ in items] + [last])
             for prefix, (_, items, last) in zip(prefixes, neurons)]
    if all(len(line) <= WIDTH for line in lines):
        return lines
    lines = []
    for prefix, (_, items, last) in zip(prefixes, neurons):
        if len(items) <= LISTED:
            pad = " " * len(prefix)
            lines += [_clip((pad if i else prefix) + text) for i, text in enumerate([t for t, _ in items] + [last])]
            continue
        order = np.argsort([-weight for _, weight in items], kind="stable")
        for k in range(min(len(items) - 1, 8), 0, -1):  # no more than 8 fit in 100 columns
            line = prefix + "   ".join([items[i][0] for i in sorted(order[:k])] + [f"(+{len(items) - k} {what})"])
            if len(line + "   " + last) <= WIDTH:
                lines.append(line + "   " + last)
                break
        else:  # not even the largest one fits beside the bias: the bias goes below
            lines += [_clip(line), " " * len(prefix) + last]
    return lines


def _values_line(title: str, names, values) -> list[str]:
    line = title + "  " + "   ".join(f"{name} = {num(v)}" for name, v in zip(names, values))
    if len(line) <= WIDTH:
        return [line]
    nonzero = int(np.count_nonzero(values))
    return [_clip(f"{title}  {len(values)} values {names[0]} ... {names[-1]}: {nonzero} non-zero, "
                  f"from {num(values.min())} to {num(values.max())}")]


def _sum_of(values) -> str:
    full = " + ".join(factor(v) for v in values) + f" = {num(np.sum(values))}"
    return full if len(full) <= WIDTH - 12 else f"the sum of {len(values)} terms = {num(np.sum(values))}"


def _picture(x, side: int) -> list[str]:
    image = np.asarray(x, dtype=np.float64).reshape(side, side)
    span = image.max() - image.min()
    scaled = (image - image.min()) / span if span > 0 else np.zeros_like(image)
    levels = np.minimum((scaled * len(SHADES)).astype(int), len(SHADES) - 1)
    return [INDENT * 2 + "".join(SHADES[level] * 2 for level in row) for row in levels]


def _clip(line: str) -> str:
    return line if len(line) <= WIDTH else line[: WIDTH - 3] + "..."
