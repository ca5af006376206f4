"""Parameter groups: which learning rate and weight decay an optimizer gives each parameter.

    opt = cl.optim.SGD(model, lr=0.01, momentum=0.9, weight_decay=5e-4, no_decay=True,
                       groups=[{"name": "body", "params": model.body_names(), "lr_scale": 0.1}])

A group is a dict: "params", the parameter names ("conv2d_1.weight") or layer names ("conv2d_1",
"residual_3": every parameter inside) it holds; "lr_scale" (default 1); "weight_decay" (default:
the optimizer's); "name" (default "group1", "group2", ...). For a parameter p of a group:

    lr_p = lr_scale · lr        λ_p = weight_decay if the group gives one, else the optimizer's λ
    λ_p = 0 when no_decay and p is a bias or 1-D (BatchNorm's γ and β, PReLU's slopes)

where lr is the optimizer's, the value a schedule sets before each step: every group follows the
schedule together (PyTorch's schedulers scale each group's lr by the same factor). A parameter in
no group has lr_scale 1 and the optimizer's λ. A parameter may be in one group only.

This module imports core and schedules only; cnnlab.optim uses it.
"""

from __future__ import annotations

from collections.abc import Mapping

from cnnlab.core import Parameter
from cnnlab.schedules import _number

#: the keys a group may have
KEYS = ("name", "params", "lr_scale", "weight_decay")


def check_groups(who: str, groups, parameters: Mapping[str, Parameter]) -> list[dict]:
    """`groups` (None or a list of dicts, see the module docstring) checked against the model's
    `parameters` and completed: each {"name", "params" (a list of str), "lr_scale",
    "weight_decay" (None: the optimizer's)}, JSON values. A ValueError names the group and
    the rule broken."""
    if groups is None:
        return []
    if isinstance(groups, Mapping | str) or not isinstance(groups, list | tuple):
        raise ValueError(f"{who}: groups must be a list of dicts such as [{{'params': ['conv2d_1'], "
                         f"'lr_scale': 0.1}}]. Received: groups={groups!r:.80}")
    checked, seen = [], {}
    for i, group in enumerate(groups, 1):
        if not isinstance(group, Mapping):
            raise ValueError(f"{who}: group {i} must be a dict. Received: {group!r:.80}")
        if unknown := sorted(set(group) - set(KEYS)):
            raise ValueError(f"{who}: group {i} has unknown keys {unknown}; a group has "
                             f"{', '.join(KEYS)}")
        name = group.get("name", f"group{i}")
        if not isinstance(name, str) or not name:
            raise ValueError(f"{who}: group {i}: name must be a non-empty string. Received: {name!r}")
        label = f"{who}: group {name!r}"
        decay = group.get("weight_decay")
        entry = {"name": name, "params": _selectors(label, group.get("params")),
                 "lr_scale": _number(label, "lr_scale", group.get("lr_scale", 1.0)),
                 "weight_decay": None if decay is None else _number(label, "weight_decay", decay)}
        for param in members(label, entry["params"], parameters):
            if param in seen:
                raise ValueError(f"{label}: {param} is already in group {seen[param]!r}; a parameter "
                                 "may be in one group only")
            seen[param] = name
        checked.append(entry)
    if len({g["name"] for g in checked}) < len(checked):
        raise ValueError(f"{who}: two groups have the same name: {[g['name'] for g in checked]}")
    return checked


def _selectors(label: str, params) -> list[str]:
    if isinstance(params, str):
        params = [params]
    if not isinstance(params, list | tuple) or not params or not all(
            isinstance(p, str) and p for p in params):
        raise ValueError(f"{label}: params must be a non-empty list of parameter or layer names, "
                         f"e.g. ['conv2d_1', 'dense_1.bias']. Received: params={params!r:.80}")
    return list(params)


def members(label: str, selectors: list[str], parameters: Mapping[str, Parameter]) -> list[str]:
    """The parameter names `selectors` name: a parameter's own name, or a layer's name (every
    parameter under it). A selector that names nothing is a ValueError listing the layers."""
    found: list[str] = []
    for selector in selectors:
        hits = [n for n in parameters if n == selector or n.startswith(selector + ".")]
        if not hits:
            layers = list(dict.fromkeys(n.split(".")[0] for n in parameters))
            raise ValueError(f"{label}: {selector!r} is neither a parameter nor a layer with "
                             f"parameters; the layers with parameters are {', '.join(layers)}")
        found += [n for n in hits if n not in found]
    return found


def exempt(name: str, p: Parameter) -> bool:
    """Whether no_decay exempts the parameter `name` from weight decay: a bias, or 1-D
    (BatchNorm's γ and β, PReLU's slopes), as is usual (timm, nanoGPT)."""
    return name.rsplit(".", 1)[-1] == "bias" or p.data.ndim <= 1


def table(groups: list[dict], parameters: Mapping[str, Parameter]) -> dict[str, int]:
    """Parameter name → the index of its group in `groups` (checked groups)."""
    return {param: i for i, group in enumerate(groups)
            for param in members(group["name"], group["params"], parameters)}


def describe(groups: list[dict], parameters: Mapping[str, Parameter]) -> str:
    """"body: 60 parameters, lr×0.1; head: 2 parameters, weight_decay=0" for reprs and logs."""
    parts = []
    for group in groups:
        n = len(members(group["name"], group["params"], parameters))
        text = f"{group['name']}: {n} parameter{'s' if n != 1 else ''}"
        if group["lr_scale"] != 1:
            text += f", lr×{group['lr_scale']:g}"
        if group["weight_decay"] is not None:
            text += f", weight_decay={group['weight_decay']:g}"
        parts.append(text)
    return "; ".join(parts)
