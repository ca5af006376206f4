"""What a run records and who watches it: History (one row per epoch) and the callbacks."""

from __future__ import annotations

from cnnlab.files import atomic_write

COLUMNS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds")


class History:
    """One row per epoch: epoch, train_loss, train_acc, val_loss, val_acc, lr, seconds."""

    def __init__(self, rows=None) -> None:
        self.rows: list[dict] = list(rows or [])

    def __getitem__(self, column: str) -> list:
        return [row.get(column) for row in self.rows]

    def __len__(self) -> int:
        return len(self.rows)

    def to_csv(self) -> str:
        lines = [",".join(COLUMNS)]
        for row in self.rows:
            lines.append(",".join("" if row.get(c) is None else f"{row[c]:.6g}" for c in COLUMNS))
        return "\n".join(lines) + "\n"

    def write_csv(self, path) -> None:
        atomic_write(path, self.to_csv().encode())


class Callback:
    """Hooks called by fit() with its Trainer (cnnlab.train.loop). Set `trainer.stop = "reason"`
    to end training after this epoch; state() and load_state() make a callback resumable (its
    state is saved in every checkpoint)."""

    def on_epoch_end(self, trainer, row: dict) -> None:
        pass

    def state(self) -> dict:
        return {}

    def load_state(self, state: dict) -> None:
        pass


class EarlyStopping(Callback):
    """Stops when `monitor` has not improved by more than min_delta for `patience` epochs
    (lower is better for a loss, higher for an accuracy)."""

    def __init__(self, monitor: str = "val_loss", patience: int = 3, min_delta: float = 0.0):
        if monitor not in COLUMNS[1:5]:
            raise ValueError(f"EarlyStopping: monitor must be one of {', '.join(COLUMNS[1:5])}. "
                             f"Received: monitor={monitor!r}")
        self.monitor, self.patience, self.min_delta = monitor, patience, min_delta
        self.best: float | None = None
        self.wait = 0

    def on_epoch_end(self, trainer, row: dict) -> None:
        value = row.get(self.monitor)
        if value is None:
            raise ValueError(f"EarlyStopping: monitor={self.monitor!r} needs validation data (val=...)")
        sign = -1 if self.monitor.endswith("loss") else 1
        if self.best is None or sign * (value - self.best) > self.min_delta:
            self.best, self.wait = value, 0
            return
        self.wait += 1
        if self.wait >= self.patience:
            trainer.stop = (f"early stopping: {self.monitor} has not improved on {self.best:.4g} "
                            f"for {self.patience} epochs")

    def state(self) -> dict:
        return {"best": self.best, "wait": self.wait}

    def load_state(self, state: dict) -> None:
        best, wait = state.get("best"), state.get("wait", 0)
        if not (best is None or isinstance(best, int | float)) or not isinstance(wait, int):
            raise ValueError(f"EarlyStopping: cannot restore the state {state}")
        self.best, self.wait = best, wait
