"""The Keras classes and functions a graded model may be built from, by name.

The evaluator (:mod:`autograder.predict`) reads a saved model's ``config.json`` before Keras is
imported and loads only a model whose every serialized object is named here: a class by the
module Keras writes for it and its class name, a function by its module and name. Anything
else (a Lambda, a layer that wraps foreign code or loads files such as ``TFSMLayer``, a
Keras internal such as ``keras.src.saving``, a class or function of the notebook, a
registered name) is refused by name before Keras runs, rather than trusted to Keras' own
``safe_mode`` alone. The lists cover what the workshop's notebooks build (CNNs, transfer
learning on MobileNet- or VGG-style bases, augmentation and rescaling layers, skip
connections, combined models) and the layers and training objects such models commonly use.
"""

from __future__ import annotations

import dataclasses
from typing import Any


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


#: Serialized plain values (tensors, arrays, bytes, slices, tuples): data, never code.
MARKERS = _words("__keras_tensor__ __tensor__ __numpy__ __bytes__ __ellipsis__ __slice__ __tuple__")
LAMBDA = "__lambda__"

#: keras.layers, by class name (the name Keras writes, never an alias such as AvgPool2D).
LAYERS = _words(
    # core, merging, reshaping
    "InputLayer Dense EinsumDense Embedding Identity Masking Activation ActivityRegularization "
    "Add Subtract Multiply Average Maximum Minimum Concatenate Dot "
    "Flatten Reshape Permute RepeatVector Cropping1D Cropping2D Cropping3D UpSampling1D "
    "UpSampling2D UpSampling3D ZeroPadding1D ZeroPadding2D ZeroPadding3D "
    # convolution and pooling
    "Conv1D Conv2D Conv3D Conv1DTranspose Conv2DTranspose Conv3DTranspose DepthwiseConv1D "
    "DepthwiseConv2D SeparableConv1D SeparableConv2D MaxPooling1D MaxPooling2D MaxPooling3D "
    "AveragePooling1D AveragePooling2D AveragePooling3D GlobalAveragePooling1D "
    "GlobalAveragePooling2D GlobalAveragePooling3D GlobalMaxPooling1D GlobalMaxPooling2D "
    "GlobalMaxPooling3D AdaptiveAveragePooling1D AdaptiveAveragePooling2D "
    "AdaptiveAveragePooling3D AdaptiveMaxPooling1D AdaptiveMaxPooling2D AdaptiveMaxPooling3D "
    # activations, normalization, regularization
    "ReLU LeakyReLU PReLU ELU Softmax BatchNormalization LayerNormalization GroupNormalization "
    "UnitNormalization RMSNormalization SpectralNormalization Dropout SpatialDropout1D "
    "SpatialDropout2D SpatialDropout3D GaussianDropout GaussianNoise AlphaDropout "
    # attention and recurrent
    "Attention AdditiveAttention MultiHeadAttention GroupQueryAttention SimpleRNN LSTM GRU "
    "SimpleRNNCell LSTMCell GRUCell StackedRNNCells RNN ConvLSTM1D ConvLSTM2D ConvLSTM3D "
    "Bidirectional TimeDistributed "
    # preprocessing that reads no file: rescaling, resizing, normalization, encoding
    "Rescaling Resizing CenterCrop Normalization Discretization CategoryEncoding Hashing "
    "HashedCrossing Pipeline "
    # image augmentation (active only while training)
    "RandomFlip RandomRotation RandomZoom RandomTranslation RandomContrast RandomCrop "
    "RandomBrightness RandomHue RandomSaturation RandomSharpness RandomShear "
    "RandomGrayscale RandomInvert RandomPosterization RandomColorDegeneration "
    "RandomColorJitter RandomGaussianBlur RandomErasing RandomPerspective "
    "RandomElasticTransform AugMix AutoContrast CutMix MixUp RandAugment Equalization "
    "Solarization"
)
MODELS = frozenset({"Sequential", "Functional", "Model"})
DTYPE_POLICIES = frozenset({"DTypePolicy", "FloatDTypePolicy"})
INITIALIZERS = _words(
    "Constant GlorotNormal GlorotUniform HeNormal HeUniform Identity IdentityInitializer "
    "LecunNormal LecunUniform Ones Orthogonal OrthogonalInitializer RandomNormal RandomUniform "
    "TruncatedNormal VarianceScaling Zeros"
)
REGULARIZERS = frozenset({"L1", "L2", "L1L2", "OrthogonalRegularizer"})
CONSTRAINTS = frozenset({"MaxNorm", "MinMaxNorm", "NonNeg", "UnitNorm"})
OPTIMIZERS = _words(
    "Adadelta Adafactor Adagrad Adam AdamW Adamax Ftrl Lamb Lion LossScaleOptimizer Nadam "
    "RMSprop SGD"
)
SCHEDULES = _words(
    "CosineDecay CosineDecayRestarts ExponentialDecay InverseTimeDecay PiecewiseConstantDecay "
    "PolynomialDecay"
)
LOSSES = _words(
    "BinaryCrossentropy BinaryFocalCrossentropy CategoricalCrossentropy "
    "CategoricalFocalCrossentropy CategoricalHinge CosineSimilarity Hinge Huber KLDivergence "
    "LogCosh MeanAbsoluteError MeanAbsolutePercentageError MeanSquaredError "
    "MeanSquaredLogarithmicError Poisson SparseCategoricalCrossentropy SquaredHinge"
)
METRICS = _words(
    "AUC Accuracy BinaryAccuracy BinaryCrossentropy BinaryIoU CategoricalAccuracy "
    "CategoricalCrossentropy CategoricalHinge CosineSimilarity F1Score FBetaScore "
    "FalseNegatives FalsePositives Hinge IoU KLDivergence LogCoshError Mean MeanAbsoluteError "
    "MeanAbsolutePercentageError MeanIoU MeanMetricWrapper MeanSquaredError "
    "MeanSquaredLogarithmicError OneHotIoU OneHotMeanIoU Poisson Precision PrecisionAtRecall "
    "R2Score Recall RecallAtPrecision RootMeanSquaredError SensitivityAtSpecificity "
    "SparseCategoricalAccuracy SparseCategoricalCrossentropy SparseTopKCategoricalAccuracy "
    "SpecificityAtSensitivity SquaredHinge Sum TopKCategoricalAccuracy TrueNegatives "
    "TruePositives"
)

#: Classes by the ``module`` Keras writes for them in config.json.
CLASSES: dict[str, frozenset[str]] = {
    "keras": MODELS | DTYPE_POLICIES,
    "keras.models": MODELS,
    "keras.src.models.functional": frozenset({"Functional"}),
    "keras.src.models.sequential": frozenset({"Sequential"}),
    "keras.dtype_policies": DTYPE_POLICIES,
    "keras.layers": LAYERS,
    "keras.initializers": INITIALIZERS,
    "keras.regularizers": REGULARIZERS,
    "keras.constraints": CONSTRAINTS,
    "keras.optimizers": OPTIMIZERS,
    "keras.optimizers.schedules": SCHEDULES,
    "keras.losses": LOSSES,
    "keras.metrics": METRICS,
}

ACTIVATIONS = _words(
    "celu elu exponential gelu glu hard_shrink hard_sigmoid hard_silu hard_swish hard_tanh "
    "leaky_relu linear log_sigmoid log_softmax mish relu relu6 selu sigmoid silu soft_shrink "
    "softmax softplus softsign sparse_plus sparse_sigmoid sparsemax squareplus swish tanh "
    "tanh_shrink threshold"
)
LOSS_FUNCTIONS = _words(
    "binary_crossentropy binary_focal_crossentropy categorical_crossentropy "
    "categorical_focal_crossentropy categorical_hinge cosine_similarity hinge huber "
    "kl_divergence log_cosh mean_absolute_error mean_absolute_percentage_error "
    "mean_squared_error mean_squared_logarithmic_error poisson sparse_categorical_crossentropy "
    "squared_hinge"
)
METRIC_FUNCTIONS = LOSS_FUNCTIONS | _words(
    "binary_accuracy categorical_accuracy sparse_categorical_accuracy "
    "sparse_top_k_categorical_accuracy top_k_categorical_accuracy"
)
#: Functions by module; ``builtins`` is how Keras writes a built-in loss or metric passed as
#: a function, which it then looks up by name among its own.
FUNCTIONS: dict[str, frozenset[str]] = {
    "keras.activations": ACTIVATIONS,
    "keras.losses": LOSS_FUNCTIONS,
    "keras.metrics": METRIC_FUNCTIONS,
    "builtins": ACTIVATIONS | METRIC_FUNCTIONS,
}


@dataclasses.dataclass(frozen=True)
class Refusal:
    """Why one serialized object is not loaded: ``kind`` is ``lambda``, ``class`` or
    ``function``; ``keras`` says whether it claims to be part of Keras (a Keras object that
    is not on the list) or not (the notebook's own, another package's)."""

    kind: str
    name: str
    module: str | None
    keras: bool

    @property
    def qualified(self) -> str:
        """``keras.layers.TFSMLayer``: the name a participant would write."""
        return f"{self.module}.{self.name}" if self.module else self.name


def is_keras(module: object) -> bool:
    """Whether ``module`` names Keras itself (``keras`` or ``keras.<anything>``)."""
    return isinstance(module, str) and (module == "keras" or module.startswith("keras."))


def refusal(obj: dict[str, Any]) -> Refusal | None:
    """None when the serialized object ``obj`` (a dict with a ``class_name``) may be loaded,
    else why not."""
    name, module = obj["class_name"], obj.get("module")
    if name == LAMBDA:
        return Refusal("lambda", name, None, keras=False)
    if name in MARKERS:
        return None
    module = module if isinstance(module, str) else None
    registered = obj.get("registered_name")
    if name == "function":
        fn = obj.get("config")
        fn = fn if isinstance(fn, str) else repr(fn)[:80]
        if module in ("builtins", None, "__main__") and fn not in FUNCTIONS["builtins"]:
            # Keras writes a function of the notebook as ``builtins`` and its name (a
            # registered one as "package>name"), the same as a built-in loss passed by value.
            return Refusal("function", fn.split(">")[-1], None, keras=False)
        if fn not in FUNCTIONS.get(module or "", frozenset()):
            return Refusal("function", fn, module, keras=is_keras(module))
        if registered not in (None, "function", fn):
            return Refusal("function", str(registered)[:80], None, keras=False)
        return None
    if not is_keras(module):
        return Refusal("class", name, module, keras=False)
    if name not in CLASSES.get(module or "", frozenset()):
        return Refusal("class", name, module, keras=True)
    if registered not in (None, name):
        # Keras looks a registered name up before the module: it would not be this class.
        return Refusal("class", str(registered)[:80], None, keras=False)
    return None


def unlisted_message(names: list[str]) -> str:
    """The refusal of Keras objects that are not on the lists, each named."""
    quoted = [repr(n) for n in dict.fromkeys(names)]
    shown = quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " and " + quoted[-1]
    return (
        f"the model cannot be graded: it uses {shown}, which {'is' if len(quoted) == 1 else 'are'} "
        "not among the Keras layers and functions the grader loads (the layers of "
        "keras.layers that compute on tensors, Sequential and functional models, optimizers, "
        "losses, metrics, activations, initializers, regularizers and constraints); build the "
        "model from those, e.g. Conv2D, Dense, Dropout or Rescaling"
    )
