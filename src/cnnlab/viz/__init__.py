"""See inside a model: filters, feature maps, curves, confusion, mistakes, the convolution demo
and the HTML report of a run. Figures are PNG bytes (matplotlib's Agg canvas, no pyplot).

    cl.viz.filters(model, path="filters.png")           # the first layer's filters
    cl.viz.feature_maps(model, x[0], path="maps.png")   # every convolution's maps for one image
    cl.viz.curves("runs/fmnist/metrics.csv")            # loss, accuracy, learning rate
    cl.viz.lr_curve(lrs, losses, path="lr.png")         # cl.lr_find's range test, rate suggested
    cl.viz.confusion(matrix, class_names)
    cl.viz.mistakes(model, x, y, class_names)           # the most confidently wrong images
    cl.viz.conv_demo(out="demo/")                       # demo.gif and demo.html
    cl.viz.report("runs/fmnist", model, x, y, class_names)
    cl.viz.neighbours_page("nn.html", queries, pool, indices, distances, title="...")

Names load on first use, so `import cnnlab` does not import matplotlib.
"""

from __future__ import annotations

from importlib import import_module

_WHERE = {
    "filters": "figures", "feature_maps": "figures", "curves": "figures", "confusion": "figures",
    "mistakes": "figures", "activations": "figures", "read_metrics": "figures", "lr_curve": "figures",
    "conv_demo": "demo", "ConvDemo": "demo", "report": "html_report",
    "neighbours_page": "neighbours",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'cnnlab.viz' has no attribute {name!r}")
    value = getattr(import_module(f"cnnlab.viz.{_WHERE[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
