"""The settings dialog: model folder, sampling, seed, self-correction, device and expert placement.

The folder gets a quick look here (is it a model folder at all?); the real check is the worker
loading it, whose Failed message the window shows when it refuses.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.protocol import MAX_REDRAWS
from app.ui.persistence import MODEL_DEFAULT, Settings

RELOAD_FIELDS = ("model_path", "device", "gpu_budget_gib", "int8_cpu_experts")
# Settings.thinking values and their labels.
THINKING_CHOICES = (("model default", "default"), ("yes: describe first", "on"),
                    ("no: draw or answer at once", "off"))


def check_model_folder(path: str) -> str | None:
    """A reason the folder is not a model folder, or None if it looks like one."""
    folder = Path(path)
    if not path:
        return "No folder chosen."
    if not folder.is_dir():
        return f"{folder}: folder not found."
    if not (folder / "config.json").is_file():
        return f"{folder}: no config.json — this is not a model folder."
    if not (folder / "tokenizer.json").is_file():
        return f"{folder}: no tokenizer.json — the model cannot read prompts."
    if not any(folder.glob("*.safetensors")):
        return f"{folder}: no *.safetensors weights."
    return None


def needs_reload(old: Settings, new: Settings) -> bool:
    return any(getattr(old, f) != getattr(new, f) for f in RELOAD_FIELDS)


def _spin(low: int, high: int, value: int) -> QSpinBox:
    box = QSpinBox()
    box.setRange(low, high)
    box.setValue(value)
    return box


def _model_default(box):
    """The box's minimum stands for "use the model folder's own default" (Settings.params)."""
    box.setSpecialValueText("model default")
    return box


def _dspin(low: float, high: float, value: float, step: float, decimals: int = 2):
    box = QDoubleSpinBox()
    box.setRange(low, high)
    box.setSingleStep(step)
    box.setDecimals(decimals)
    box.setValue(value)
    return box


class SettingsDialog(QDialog):
    def __init__(self, settings: Settings, default_model: str = "",
                 parent: QWidget | None = None, load_error: str = "") -> None:
        super().__init__(parent)
        self.setWindowTitle("Settings")
        self.setMinimumWidth(520)
        self.settings, self.default_model = settings, default_model
        s = settings
        self.model = QLineEdit(s.model_path)
        self.model.setPlaceholderText(f"default: {default_model}")
        self.model.textChanged.connect(self._check)
        browse = QToolButton(text="Browse…")
        browse.clicked.connect(self._browse)
        self.model_status = QLabel()
        self.model_status.setWordWrap(True)
        self.model_status.setObjectName("hint")
        self.load_error = load_error
        row = QHBoxLayout()
        row.addWidget(self.model, 1)
        row.addWidget(browse)
        self.device = QComboBox()
        self.device.addItems(["cpu", "cuda"])
        self.device.setCurrentText(s.device)
        self.budget = _dspin(0, 1024, s.gpu_budget_gib, 0.5, 1)
        self.budget.setSpecialValueText("automatic")
        self.budget.setSuffix(" GiB")
        self.int8 = QCheckBox("int8 copies of CPU experts (faster, tiny accuracy cost)")
        self.int8.setChecked(s.int8_cpu_experts)
        # The lowest value of each sampling box reads "model default" (Qt's specialValueText).
        self.image_steps = _model_default(_spin(0, 256, s.image_steps))
        self.text_steps = _model_default(_spin(0, 256, s.text_steps))
        self.block = _model_default(_spin(0, 1024, s.block_length))
        self.gen_length = _model_default(_spin(0, 4096, s.gen_length))
        self.cfg = _model_default(_dspin(-0.25, 20, s.cfg, 0.25))
        self.threshold = _model_default(_dspin(-0.05, 1, s.threshold, 0.05))
        self.temperature = _model_default(_dspin(-0.1, 5, s.temperature, 0.1))
        self.text_temperature = _model_default(_dspin(-0.1, 5, s.text_temperature, 0.1))
        self.thinking = QComboBox()
        for label, value in THINKING_CHOICES:
            self.thinking.addItem(label, value)
        self.thinking.setCurrentIndex(max(0, self.thinking.findData(s.thinking)))
        self.thinking.setToolTip("Thinking mode: the model first writes a full description of "
                                 "the picture to draw (choosing what the prompt leaves open), "
                                 "of the edited picture, or of the picture asked about, then "
                                 "draws, edits or answers after it.")
        self.self_check = _model_default(_spin(MODEL_DEFAULT, MAX_REDRAWS, s.self_check))
        self.self_check.setSuffix(" redraws")
        self.self_check.setToolTip("After drawing from its thinking, the model describes its own "
                                   "picture; while that is not the text it drew from, it draws "
                                   "again with the next seed, up to this many times (0: never).")
        self.seed_random = QCheckBox("random seed each run")
        self.seed_random.setChecked(s.seed_random)
        self.seed = _spin(0, 2**31 - 1, s.seed)
        self.seed_random.toggled.connect(lambda on: self.seed.setEnabled(not on))
        self.seed.setEnabled(not s.seed_random)
        self.self_correction = QCheckBox("re-mask committed tokens the model later doubts")
        self.self_correction.setChecked(s.self_correction)
        self.remask = _dspin(0, 1, s.remask_threshold, 0.05)
        self.self_correction.toggled.connect(self.remask.setEnabled)
        self.remask.setEnabled(s.self_correction)

        model_box = QGroupBox("Model")
        form = QFormLayout(model_box)
        form.addRow("Folder", row)
        form.addRow("", self.model_status)
        form.addRow("Device", self.device)
        form.addRow("GPU budget for experts", self.budget)
        form.addRow("", self.int8)
        sampling = QGroupBox("Sampling")
        form2 = QFormLayout(sampling)
        form2.addRow("Image steps per block", self.image_steps)
        form2.addRow("Text steps per block", self.text_steps)
        form2.addRow("Block length", self.block)
        form2.addRow("Answer length", self.gen_length)
        form2.addRow("CFG scale", self.cfg)
        form2.addRow("Confidence threshold", self.threshold)
        form2.addRow("Image temperature", self.temperature)
        form2.addRow("Text temperature", self.text_temperature)
        form2.addRow("Think first", self.thinking)
        form2.addRow("Self-check", self.self_check)
        seed_row = QHBoxLayout()
        seed_row.addWidget(self.seed_random)
        seed_row.addWidget(self.seed)
        form2.addRow("Seed", seed_row)
        form2.addRow("Self-correction", self.self_correction)
        form2.addRow("Re-mask below", self.remask)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok
                                   | QDialogButtonBox.StandardButton.Cancel
                                   | QDialogButtonBox.StandardButton.RestoreDefaults)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        buttons.button(QDialogButtonBox.StandardButton.RestoreDefaults).clicked.connect(
            self._defaults)
        layout = QVBoxLayout(self)
        layout.addWidget(model_box)
        layout.addWidget(sampling)
        layout.addWidget(buttons)
        self._check()

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Model folder",
                                                  self.model.text() or self.default_model)
        if folder:
            self.model.setText(folder)

    def _check(self) -> None:
        path = self.model.text().strip() or self.default_model
        problem = check_model_folder(path)
        if problem is None and self.load_error and path == (self.settings.model_path
                                                            or self.default_model):
            problem = f"The worker could not load it: {self.load_error}"
        self.model_status.setText(problem or "Looks like a model folder.")
        self.model_status.setProperty("error", problem is not None)

    def _defaults(self) -> None:
        """Sampling back to the defaults; the model folder and placement stay."""
        d = Settings()
        for box, value in ((self.image_steps, d.image_steps), (self.text_steps, d.text_steps),
                           (self.block, d.block_length), (self.gen_length, d.gen_length),
                           (self.cfg, d.cfg), (self.threshold, d.threshold),
                           (self.temperature, d.temperature),
                           (self.text_temperature, d.text_temperature),
                           (self.seed, d.seed), (self.remask, d.remask_threshold),
                           (self.self_check, d.self_check)):
            box.setValue(value)
        self.seed_random.setChecked(d.seed_random)
        self.self_correction.setChecked(d.self_correction)
        self.thinking.setCurrentIndex(self.thinking.findData(d.thinking))

    def result_settings(self) -> Settings:
        return dataclasses.replace(
            self.settings, model_path=self.model.text().strip(), device=self.device.currentText(),
            gpu_budget_gib=self.budget.value(), int8_cpu_experts=self.int8.isChecked(),
            image_steps=self.image_steps.value(), text_steps=self.text_steps.value(),
            block_length=self.block.value(), gen_length=self.gen_length.value(),
            cfg=self.cfg.value(), threshold=self.threshold.value(),
            temperature=self.temperature.value(),
            text_temperature=self.text_temperature.value(),
            thinking=self.thinking.currentData(), self_check=self.self_check.value(),
            seed_random=self.seed_random.isChecked(), seed=self.seed.value(),
            self_correction=self.self_correction.isChecked(),
            remask_threshold=self.remask.value(),
        )
