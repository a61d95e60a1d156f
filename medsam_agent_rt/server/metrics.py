"""Prometheus text exposition (format 0.0.4) of the server's counters, gauges and latency
histograms, without a client library: a few thread-safe series rendered by ``render()``."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable

# seconds; turn latency spans ~1 ms (a human click on a cached image) to minutes (a model turn)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

Labels = tuple[tuple[str, str], ...]


def _labels(labels: Labels, extra: str = "") -> str:
    parts = [f'{k}="{_escape(v)}"' for k, v in labels]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _escape(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _num(x: float) -> str:
    if math.isinf(x):
        return "+Inf"
    return repr(float(x)) if not float(x).is_integer() else str(int(x))


class Metrics:
    """Counters (``inc``), histograms (``observe``) and gauges read at render time
    (``gauge(name, help, fn)``), each with optional labels."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._help: dict[str, tuple[str, str]] = {}  # name -> (type, help)
        self._counters: dict[str, dict[Labels, float]] = {}
        self._hists: dict[str, dict[Labels, list[float]]] = {}  # bucket counts + [sum, count]
        self._gauges: dict[str, Callable[[], float]] = {}

    def counter(self, name: str, help_text: str) -> None:
        self._help[name] = ("counter", help_text)
        self._counters.setdefault(name, {})

    def histogram(self, name: str, help_text: str) -> None:
        self._help[name] = ("histogram", help_text)
        self._hists.setdefault(name, {})

    def gauge(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        self._help[name] = ("gauge", help_text)
        self._gauges[name] = read

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        with self._lock:
            series = self._counters[name]
            series[key] = series.get(key, 0.0) + amount

    def observe(self, name: str, seconds: float, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        with self._lock:
            series = self._hists[name]
            row = series.get(key)
            if row is None:
                row = series[key] = [0.0] * (len(LATENCY_BUCKETS) + 2)
            for i, le in enumerate(LATENCY_BUCKETS):
                if seconds <= le:
                    row[i] += 1
            row[-2] += seconds
            row[-1] += 1

    def value(self, name: str, **labels: str) -> float:
        """A counter's current value (0 when never incremented)."""
        with self._lock:
            return self._counters[name].get(tuple(sorted(labels.items())), 0.0)

    def render(self) -> str:
        lines: list[str] = []
        with self._lock:
            for name, (kind, text) in self._help.items():
                lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]
                if kind == "counter":
                    for key, v in sorted(self._counters[name].items()):
                        lines.append(f"{name}{_labels(key)} {_num(v)}")
                elif kind == "gauge":
                    lines.append(f"{name} {_num(self._gauges[name]())}")
                else:
                    for key, row in sorted(self._hists[name].items()):
                        for i, le in enumerate((*LATENCY_BUCKETS, math.inf)):
                            count = row[-1] if math.isinf(le) else row[i]
                            le_label = 'le="' + _num(le) + '"'
                            lines.append(f"{name}_bucket{_labels(key, le_label)} {_num(count)}")
                        lines.append(f"{name}_sum{_labels(key)} {_num(row[-2])}")
                        lines.append(f"{name}_count{_labels(key)} {_num(row[-1])}")
        return "\n".join(lines) + "\n"
