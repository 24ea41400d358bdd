"""The evaluator's allowlist: a model is loaded only when every class and function in its
config.json is one a Keras model is built from, named; anything else is refused by name.

The refusals are checked on hand-written configs (no Keras); the slow tests build every model
the workshop's notebooks build (the instructor's functions, each set of alternative answers
in tests/fixtures/workshop/, the offline and the MobileNetV2 base, VGG16, augmentation),
small, save each as the kernel would and pre-scan the file the evaluator is given.
"""

from __future__ import annotations

import ast
import copy
import os
from pathlib import Path
from typing import Any

import nbformat
import numpy as np
import pytest
from conftest import REPO

from autograder.modelallow import CLASSES, FUNCTIONS, LAYERS
from autograder.predict import _read_model_config, _Refused, check_keras_version, scan_model_config

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

UNLISTED = (
    "which {verb} not among the Keras layers and functions the grader loads (the layers of "
    "keras.layers that compute on tensors, Sequential and functional models, optimizers, "
    "losses, metrics, activations, initializers, regularizers and constraints); build the "
    "model from those, e.g. Conv2D, Dense, Dropout or Rescaling"
)


def _obj(module: str | None, name: str, config: Any = None, **extra: Any) -> dict[str, Any]:
    obj = {"class_name": name, "config": {} if config is None else config, **extra}
    if module is not None:
        obj["module"] = module
    obj.setdefault("registered_name", None)
    return obj


def _dense(name: str = "dense", **config: Any) -> dict[str, Any]:
    policy = _obj("keras", "DTypePolicy", {"name": "float32"})
    return _obj("keras.layers", "Dense", {"name": name, "units": 10, "dtype": policy, **config})


def _functional(*layers: dict[str, Any], name: str = "outer") -> dict[str, Any]:
    """A Functional model around a Sequential holding ``layers``: nesting as saved."""
    inner = _obj("keras", "Sequential", {"name": "inner", "layers": list(layers)})
    tensor = {"class_name": "__keras_tensor__", "config": {"shape": [None, 4], "dtype": "float32"}}
    return _obj(
        "keras.src.models.functional",
        "Functional",
        {"name": name, "layers": [_obj("keras.layers", "InputLayer", {"name": "in"}), inner]},
        registered_name="Functional",
        inbound=[tensor],
    )


def _refusal(config: Any) -> _Refused:
    with pytest.raises(_Refused) as caught:
        scan_model_config(config)
    assert caught.value.code == "custom-code", caught.value.message
    return caught.value


@pytest.mark.parametrize(
    ("part", "named"),
    [
        (_obj("keras.layers", "TFSMLayer", {"name": "saved", "filepath": "/tmp/m"}), "TFSMLayer"),
        (_obj("keras.layers", "TorchModuleWrapper", {"name": "t"}), "TorchModuleWrapper"),
        (
            _obj(
                "keras.layers",
                "Lambda",
                {
                    "name": "l",
                    "function": _obj(
                        "keras.activations", "function", "relu", registered_name="relu"
                    ),
                },
            ),
            "Lambda",
        ),
        (
            _obj("keras.layers", "TextVectorization", {"name": "v", "vocabulary": "/etc/passwd"}),
            "TextVectorization",
        ),
    ],
)
def test_keras_layers_that_wrap_code_or_read_files_are_refused_by_name(part, named):
    refused = _refusal(_functional(_dense("d1"), part))
    assert refused.message == (
        f"the model cannot be graded: it uses 'keras.layers.{named}', " + UNLISTED.format(verb="is")
    )


def test_keras_internals_and_utilities_are_refused_wherever_they_sit():
    saving = _obj("keras.src.saving.serialization_lib", "deserialize_keras_object", {"name": "x"})
    get_file = _obj("keras.utils", "function", "get_file", registered_name="get_file")
    model = _functional(_dense("d1", kernel_initializer=saving), _dense("d2", activation=get_file))
    assert _refusal(model).message == (
        "the model cannot be graded: it uses "
        "'keras.src.saving.serialization_lib.deserialize_keras_object' and "
        "'keras.utils.get_file', " + UNLISTED.format(verb="are")
    )


def test_a_class_or_function_of_another_module_is_refused_naming_the_module():
    system = _obj("os", "system", {"name": "boom"})
    assert _refusal(_functional(system)).message.startswith(
        "the model cannot be graded: it uses the class 'system' from the module 'os', "
    )
    call = _obj("os", "function", "system", registered_name="function")
    assert _refusal(_functional(_dense(activation=call))).message == (
        "the model cannot be graded: it uses the function 'system' from the module 'os', which "
        "the grader does not load (Keras safe mode); use built-in layers and activations "
        "instead"
    )


def test_builtins_functions_are_only_keras_own_losses_metrics_and_activations():
    # Keras looks a 'builtins' function up by name in seven of its modules, where 'get',
    # 'serialize' or 'deserialize' are not modelling functions.
    for name in ("deserialize", "get", "eval", "Custom>swishy"):
        fn = _obj("builtins", "function", name, registered_name="function")
        shown = name.split(">")[-1]
        assert _refusal(_functional(_dense(activation=fn))).message.startswith(
            f"the model cannot be graded: it uses the function {shown!r} defined in the notebook"
        ), name
    loss = _obj("builtins", "function", "sparse_categorical_crossentropy")
    scan_model_config(_functional(_dense(activation=loss)))


def test_a_registered_name_on_an_allowed_class_is_refused():
    # Keras looks the registered name up before the module: it would not be a Dense.
    disguised = _dense()
    disguised["registered_name"] = "builtins>eval"
    assert _refusal(_functional(disguised)).message.startswith(
        "the model cannot be graded: it uses the class 'builtins>eval' defined in the notebook"
    )
    relu = _obj("keras.activations", "function", "relu", registered_name="mine>relu")
    assert "'mine>relu'" in _refusal(_functional(_dense(activation=relu))).message


def test_lambdas_are_named_by_their_layer_inside_nested_models():
    code = {"class_name": "__lambda__", "config": {"code": "4wEAAA=="}}
    lam = _obj("keras.layers", "Lambda", {"name": "double", "function": code})
    with pytest.raises(_Refused) as caught:
        scan_model_config(_functional(_dense(), lam))
    assert caught.value.code == "lambda"
    assert "its Lambda layer 'double' holds Python code" in caught.value.message


def test_only_the_top_compile_config_is_skipped_the_loader_discards_it():
    custom_loss = _obj("builtins", "function", "my_loss", registered_name="function")
    model = _functional(_dense())
    model["compile_config"] = {"loss": custom_loss, "optimizer": "adam"}
    scan_model_config(model)  # load_model(compile=False) never reads it
    nested = copy.deepcopy(model)
    nested["config"]["layers"][1]["compile_config"] = {"loss": custom_loss}
    assert "'my_loss' defined in the notebook" in _refusal(nested).message


def test_the_lists_name_no_class_that_runs_or_loads_foreign_code():
    for banned in ("Lambda", "TFSMLayer", "JaxLayer", "FlaxLayer", "TorchModuleWrapper", "Layer"):
        assert banned not in LAYERS
    assert all(module == "keras" or module.startswith("keras.") for module in CLASSES)
    assert not {"get", "serialize", "deserialize"} & set().union(*FUNCTIONS.values())


def test_a_keras_older_than_3_15_1_is_a_grader_problem_that_says_how_to_upgrade():
    for fine in ("3.15.1", "3.16.0", "3.15.2.dev20260101", "4.0.0"):
        check_keras_version(fine)
    for old in ("3.15.0", "3.9.2", "2.15.0"):
        with pytest.raises(_Refused) as caught:
            check_keras_version(old)
        assert caught.value.code == "grader"
        assert caught.value.message == (
            f"the grader's Keras is {old}, older than 3.15.1, whose safe mode the evaluator "
            "relies on; upgrade it: pip install 'keras>=3.15.1,<4'"
        )


# --- every model the workshop builds passes -------------------------------------------------

SOURCE = REPO / "source"
ALTERNATIVES = REPO / "tests" / "fixtures" / "workshop"
#: Functions of the notebooks that build, compile or change models (solutions and helpers).
BUILDERS = {
    "mnist-kaggle": {"build_cnn"},
    "transfer-learning": {
        "load_base",
        "freeze",
        "build_head_model",
        "compile_for_training",
        "unfreeze_from",
        "build_scratch_cnn",
        "build_combined_model",
        "build_block_skip_model",
        "residual_block",
        "build_skip_model",
    },
}


def _functions(assignment: str, keras: Any, student: str | None) -> dict[str, Any]:
    """The notebook's model-building functions, as the instructor (or ``student``) wrote
    them, defined in a namespace like the notebook's."""
    nb = nbformat.read(SOURCE / assignment / f"{assignment}.ipynb", as_version=4)
    namespace: dict[str, Any] = {
        "keras": keras,
        "np": np,
        "IMAGE_SIZE": 32,
        "LEARNING_RATE": 1e-3,
        "BASE_FILE": str(SOURCE / "transfer-learning" / "pretrained_base.keras"),
    }
    sources = [cell.source for cell in nb.cells if cell.cell_type == "code"]
    if student is not None:
        sources += [
            p.read_text() for p in sorted((ALTERNATIVES / assignment / student).glob("*.py"))
        ]
    for source in sources:
        for node in ast.parse(source).body:
            if isinstance(node, ast.FunctionDef) and node.name in BUILDERS[assignment]:
                exec(compile(ast.Module([node], []), assignment, "exec"), namespace)
    assert BUILDERS[assignment] <= set(namespace), BUILDERS[assignment] - set(namespace)
    return namespace


def _students(assignment: str) -> list[str | None]:
    return [None, *sorted(p.name for p in (ALTERNATIVES / assignment).iterdir() if p.is_dir())]


def _scan_saved(keras: Any, model: Any, folder: Path) -> None:
    """Save ``model`` as the collection snippet does; pre-scan the file the evaluator gets."""
    path = folder / f"{model.name}.keras"
    keras.saving.save_model(model, path)
    scan_model_config(_read_model_config(path))


@pytest.fixture(scope="module")
def keras():
    import keras

    keras.utils.set_random_seed(0)
    return keras


@pytest.mark.slow
@pytest.mark.parametrize("student", _students("mnist-kaggle"))
def test_every_exercise_cnn_passes_the_prescan(keras, student, tmp_path):
    ns = _functions("mnist-kaggle", keras, student)
    model = ns["build_cnn"]((28, 28, 1), 10)
    _scan_saved(keras, model, tmp_path)
    # "Going further": augmentation and rescaling inside the model.
    augmented = keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            keras.layers.Rescaling(1 / 255),
            keras.layers.RandomRotation(0.05),
            keras.layers.RandomTranslation(0.1, 0.1),
            keras.layers.RandomFlip("horizontal"),
            keras.layers.RandomZoom(0.1),
            model,
        ],
        name="augmented",
    )
    _scan_saved(keras, augmented, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("student", _students("transfer-learning"))
def test_every_tutorial_model_passes_the_prescan(keras, student, tmp_path, monkeypatch):
    ns = _functions("transfer-learning", keras, student)
    real = keras.applications.MobileNetV2
    # The ImageNet weights cannot be downloaded here; the architecture is the same.
    monkeypatch.setattr(
        keras.applications, "MobileNetV2", lambda **kw: real(**{**kw, "weights": None})
    )
    bases = [("project", "conv5", ["pool1", "pool2", "conv5"])]
    if student is None:  # the answers change the heads, not the base: one MobileNetV2 is enough
        bases.append(
            (
                "imagenet",
                "block_16_expand",
                ["block_2_add", "block_5_add", "block_12_add", "out_relu"],
            )
        )
    for weights, top, blocks in bases:
        base = ns["freeze"](ns["load_base"](weights))
        head = ns["compile_for_training"](ns["build_head_model"](base, 10), 1e-3)
        _scan_saved(keras, head, tmp_path)
        ns["unfreeze_from"](base, top)
        head = ns["compile_for_training"](head, 1e-4)
        scratch = ns["compile_for_training"](ns["build_scratch_cnn"](10), 1e-3)
        combined = ns["compile_for_training"](ns["build_combined_model"](head, scratch, 10), 1e-3)
        block = ns["build_block_skip_model"](ns["freeze"](base), blocks, 10)
        skip = ns["compile_for_training"](ns["build_skip_model"](10), 1e-3)
        for model in (combined, block, skip):
            _scan_saved(keras, model, tmp_path)


@pytest.mark.slow
def test_transfer_learning_bases_of_keras_applications_pass_the_prescan(keras):
    from keras.src.saving.serialization_lib import serialize_keras_object

    # The config.json that save_model writes, without writing the weights.
    for build in (
        keras.applications.VGG16,
        keras.applications.MobileNet,
        keras.applications.EfficientNetB0,
    ):
        base = build(include_top=False, weights=None, input_shape=(32, 32, 3))
        base.trainable = False
        inputs = keras.Input((32, 32, 3))
        x = keras.layers.GlobalAveragePooling2D()(base(inputs, training=False))
        model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x))
        model.compile(keras.optimizers.AdamW(1e-3), "sparse_categorical_crossentropy", ["accuracy"])
        scan_model_config(serialize_keras_object(model))
