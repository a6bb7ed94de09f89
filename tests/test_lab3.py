"""Lab 3 (softmax regression to LeNet-5 on Fashion-MNIST), built from source/ and graded in the sandbox.

One build and one grading batch for the whole file (the training cells dominate the time):
the solution, the blank release, three submissions with bugs in independent cells, and a
blank one that looks for the held-out test labels.
"""

from __future__ import annotations

import gzip
import hashlib
import json

import nbformat
import pytest

from autograder.course import Course
from autograder.data import FASHION_MNIST_SOURCE, sha256_file
from autograder.demo import DemoStudent
from autograder.executors.sandbox import probe
from autograder.grading.kernel_policy import SANDBOX_DATA
from conftest import (
    assert_committed_lab_matches_the_source,
    assert_costs_exactly,
    assert_data_cell_names_the_command,
    assert_full_marks,
    assert_graded_zero,
    assert_messages_name_the_cause,
    build_repo_lab,
    grade_class,
    needs_fashion_mnist,
)

LAB = "lab3_mnist_lenet"

pytestmark = needs_fashion_mnist

NO_ACTIVATION_MLP = '''
class TwoLayerMLP(nn.Module):
    """Forgets the ReLU: two linear layers are one linear map."""

    def __init__(self, hidden=128):
        super().__init__()
        self.fc1 = nn.Linear(28 * 28, hidden)
        self.fc2 = nn.Linear(hidden, 10)

    def forward(self, x):
        return self.fc2(self.fc1(x.flatten(1)))
'''
SHUFFLED_EVALUATE = '''
def evaluate(model, images, device, batch_size=1000):
    """Goes through a shuffled loader: right predictions, wrong order."""
    model.eval()
    loader = DataLoader(TensorDataset(images), batch_size=batch_size, shuffle=True)
    with torch.no_grad():
        return torch.cat([model(x.to(device)).argmax(dim=1).cpu() for (x,) in loader])
'''
WRONG_FLATTEN_LENET = '''
class LeNet5(nn.Module):
    """fc1 sized for 4x4 maps (as without padding): the forward pass fails at fc1."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, kernel_size=5, padding=2)
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(6, 16, kernel_size=5)
        self.pool2 = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(16 * 4 * 4, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x):
        x = self.pool1(F.relu(self.conv1(x)))
        x = self.pool2(F.relu(self.conv2(x)))
        x = F.relu(self.fc1(x.flatten(1)))
        x = F.relu(self.fc2(x))
        return self.fc3(x)
'''
TRANSPOSED_CONFUSION = '''
def confusion_matrix(predictions, labels, num_classes):
    """Rows and columns swapped."""
    flat = predictions.long() * num_classes + labels.long()
    return torch.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)
'''
WHOLE_BATCH_AUGMENT = '''
def make_augmentation():
    return transforms.RandomAffine(degrees=10, translate=(0.1, 0.1), fill=BACKGROUND)


def augment_batch(images, transform):
    """One call on the whole batch: every image gets the same rotation."""
    return transform(images)
'''
LAZY_LENET = '''
class LeNet5(nn.Module):
    """Lazy layers, as Dive into Deep Learning builds LeNet: each learns its input size at the first call."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.LazyConv2d(6, kernel_size=5, padding=2)
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.LazyConv2d(16, kernel_size=5)
        self.pool2 = nn.MaxPool2d(2)
        self.fc1 = nn.LazyLinear(120)
        self.fc2 = nn.LazyLinear(84)
        self.fc3 = nn.LazyLinear(10)

    def forward(self, x):
        x = self.pool1(F.relu(self.conv1(x)))
        x = self.pool2(F.relu(self.conv2(x)))
        x = F.relu(self.fc1(x.flatten(1)))
        x = F.relu(self.fc2(x))
        return self.fc3(x)
'''
NO_ZERO_GRAD = '''
def train(model, loader, optimizer, epochs, device):
    """optimizer.zero_grad() forgotten: every step also follows all the earlier batches' gradients."""
    model.train()
    losses = []
    for _ in range(epochs):
        for images, labels in loader:
            images, labels = images.to(device), labels.to(device)
            loss = F.cross_entropy(model(images), labels)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    return losses
'''
SQUEEZED_EVALUATE = '''
def evaluate(model, images, device, batch_size=1000):
    """squeeze() on the logits: a last batch of one image loses its batch dimension."""
    model.eval()
    with torch.no_grad():
        return torch.cat([model(images[i:i + batch_size].to(device)).squeeze().argmax(dim=-1).cpu()
                          for i in range(0, len(images), batch_size)])
'''
FLOAT_CONFUSION = '''
def confusion_matrix(predictions, labels, num_classes):
    """Right counts, as floats: torch.zeros is float32 unless told otherwise."""
    matrix = torch.zeros(num_classes, num_classes)
    matrix.index_put_((labels.long(), predictions.long()), torch.ones(len(labels)), accumulate=True)
    return matrix
'''
ZERO_FILL_AUGMENTATION = '''
def make_augmentation():
    """fill=0 on standardised images: the corners rotated in are brighter than the background."""
    return transforms.RandomAffine(degrees=10, translate=(0.1, 0.1), fill=0.0)


def augment_batch(images, transform):
    return torch.stack([transform(image) for image in images])
'''
SNOOP = """
import hashlib, json, os
root = os.environ.get("AUTOGRADER_DATA", "")
found = []
for folder, _, names in os.walk(root):
    for name in names:
        path = os.path.join(folder, name)
        try:
            with open(path, "rb") as f:
                found.append([path, hashlib.sha256(f.read()).hexdigest()])
        except OSError as err:
            found.append([path, type(err).__name__])
opened = dict()
for path in {paths!r} + [os.path.join(root, "labels", "fashion_mnist_test.npy")]:
    try:
        with open(path, "rb") as f:
            opened[path] = "READ " + hashlib.sha256(f.read()).hexdigest()
    except OSError as err:
        opened[path] = type(err).__name__
print("SNOOP " + json.dumps({{"root": root, "found": found, "opened": opened}}))
"""


@pytest.fixture(scope="session")
def lab3_course(tmp_path_factory) -> Course:
    """A copy of this repository's lab 3 with Fashion-MNIST staged, built from scratch."""
    return build_repo_lab(tmp_path_factory, LAB, ["fashion_mnist"])


@pytest.fixture(scope="module")
def graded(lab3_course):
    """Every submission of this file, graded in one batch: {student: Result}."""
    course = lab3_course
    label_paths = [
        str(course.data / "labels" / "fashion_mnist_test.npy"),
        str(course.data / "labels"),
        f"{SANDBOX_DATA}/labels/fashion_mnist_test.npy",
        f"{SANDBOX_DATA}/fashion_mnist/FashionMNIST/raw/t10k-labels-idx1-ubyte",
    ]
    students = [
        DemoStudent("ada", "the solution"),
        DemoStudent("ben", "the blank release", answers="blank"),
        DemoStudent(
            "nora", "MLP without ReLU, evaluate through a shuffled loader", replace={"evaluate": SHUFFLED_EVALUATE}
        ),
        DemoStudent(
            "flynn",
            "fc1 sized for 4x4 maps, transposed confusion matrix",
            replace={"confusion_matrix": TRANSPOSED_CONFUSION},
        ),
        DemoStudent(
            "tess",
            "trains one epoch fewer and predicts the training images, augments the whole batch at once",
            replace={"make_augmentation": WHOLE_BATCH_AUGMENT},
        ),
        DemoStudent(
            "hider",
            "LeNet-5 of lazy layers (valid); train without zero_grad, evaluate that squeezes, float confusion counts, "
            "augmentation filled with 0",
            replace={
                "train": NO_ZERO_GRAD,
                "evaluate": SQUEEZED_EVALUATE,
                "confusion_matrix": FLOAT_CONFUSION,
                "make_augmentation": ZERO_FILL_AUGMENTATION,
            },
        ),
        DemoStudent(
            "mallory", "blank, looks for the test labels", answers="blank", extra_cell=SNOOP.format(paths=label_paths)
        ),
    ]
    edits = [
        ("nora", "mlp_solution", None, NO_ACTIVATION_MLP),  # classes: a whole cell each
        ("flynn", "lenet_solution", None, WRONG_FLATTEN_LENET),
        ("tess", "lenet_training_solution", "evaluate(lenet, test_x, device)", "evaluate(lenet, train_x, device)"),
        ("tess", "lenet_training_solution", "range(EPOCHS)", "range(EPOCHS - 1)"),
        ("hider", "lenet_solution", None, LAZY_LENET),
    ]
    return grade_class(course, LAB, students, edits)


FULL_CELLS = {
    "softmax_regression_tests": 1.0,
    "mlp_tests": 2.0,
    "deep_mlp_tests": 1.0,
    "lenet_tests": 3.0,
    "train_tests": 2.0,
    "evaluate_tests": 1.0,
    "lenet_accuracy_tests": 3.0,
    "confusion_tests": 1.0,
    "augment_tests": 1.0,
}
FULL = sum(FULL_CELLS.values())


def test_the_solution_scores_full_marks(graded):
    messages = assert_full_marks(graded["ada"], FULL_CELLS)
    assert "on 10000 held-out examples" in messages["lenet_test_accuracy"]


def test_the_blank_release_scores_zero(graded):
    assert_graded_zero(graded["ben"], FULL_CELLS)


def assert_loses_exactly(result, cells: dict[str, float], failed: set[str], phrases: dict[str, str]) -> None:
    """A buggy submission, graded: `cells` (grade_id -> score) lost points and every other cell kept them all,
    exactly the checks `failed` failed, and each check of `phrases` names its cause with its phrase."""
    assert (result.status, result.reason) == ("graded", None)
    assert_costs_exactly(result, FULL_CELLS, FULL, cells, failed)
    assert_messages_name_the_cause(result, phrases)


def test_no_relu_and_shuffled_predictions(graded):
    assert_loses_exactly(
        graded["nora"],
        {"mlp_tests": 0.0, "evaluate_tests": 0.333333, "lenet_accuracy_tests": 0.5},
        {
            "mlp_fixed_logits",
            "mlp_fixed_logits_hidden_7",
            "evaluate_predictions",
            "evaluate_predictions_short_last_batch",
            "evaluate_last_batch_of_one",
            "lenet_test_accuracy",
        },  # its predictions are int64 on the CPU, as the docstring says
        {
            "mlp_fixed_logits": "without the ReLU",
            "evaluate_predictions": "no shuffling",
            "lenet_test_accuracy": "near chance: predictions in a different order than the data set",
        },
    )


def test_wrong_flatten_size_and_transposed_confusion(graded):
    # lenet_tests: its points come from the hidden fixed-logits checks, which fail; the training cell then raises.
    # The transposed confusion matrix still holds int64 counts: half the hidden points of its cell.
    assert_loses_exactly(
        graded["flynn"],
        {"lenet_tests": 0.0, "lenet_accuracy_tests": 0.0, "confusion_tests": 0.5},
        {
            "lenet_fc1_shape",
            "lenet_fc2_shape",
            "lenet_fc3_shape",
            "lenet_parameter_count",
            "lenet_fixed_logits",
            "lenet_fixed_logits_one_image",
            "lenet_test_predictions_shape",
            "lenet_test_accuracy",
            "lenet_training_record",
            "confusion_small",
            "confusion_unused_class",
        },
        {
            "lenet_fc1_shape": "400 features",
            "lenet_test_accuracy": "the test cell raised NameError",
            "confusion_small": "rows are the true classes",
        },
    )


def test_one_epoch_fewer_predicting_the_training_set_and_whole_batch_augmentation(graded):
    assert_loses_exactly(
        graded["tess"],
        {"lenet_accuracy_tests": 0.0, "augment_tests": 0.666667},
        {"lenet_test_predictions_shape", "lenet_test_accuracy", "lenet_training_record", "augment_one_image_at_a_time"},
        {
            "lenet_test_accuracy": "predictions of shape (55000,) for 10000 held-out examples",
            "lenet_training_record": "train for EPOCHS epochs",
            "augment_one_image_at_a_time": "once per image",
        },
    )


def test_bugs_the_fixtures_used_to_hide_and_lazy_layers(graded):
    """Each bug costs its own check, named; the lazy LeNet-5 (valid) keeps lenet_tests' points: the locked helpers
    materialise its parameters before reading them."""
    assert_loses_exactly(
        graded["hider"],
        {
            "train_tests": 1.2,
            "evaluate_tests": 0.666667,
            "confusion_tests": 0.5,
            "augment_tests": 0.666667,
            "lenet_accuracy_tests": 0.5,
        },
        {
            "train_clears_gradients_between_steps",
            "evaluate_last_batch_of_one",
            "confusion_int64",
            "augment_fills_with_the_background",
            "lenet_test_accuracy",
        },
        {
            "train_clears_gradients_between_steps": "call optimizer.zero_grad() before every loss.backward()",
            "lenet_test_accuracy": "the model did not train (optimizer.zero_grad()?",
            "evaluate_last_batch_of_one": "never squeeze() the batch dimension away",
            "confusion_int64": "counts are int64",
            "augment_fills_with_the_background": "not 0: an image of background only stays background only",
        },
    )


def test_the_fixture_images_give_distinct_logits(lab3_course):
    """The four fixture images are told apart by every model the fixed-logits checks run: a bug that moves
    every image's logits alike (a bias) cannot hide behind near-copies."""
    import numpy as np

    from autograder.references import load_references

    references = load_references(lab3_course.references_file(LAB))
    # (the old near-copies differed by at most 0.002 in LeNet's logits; the checks' tolerance is 1e-5 + 1e-4 x)
    for name in ("softmax_fixed_logits", "mlp_fixed_logits_hidden_7", "deep_mlp_fixed_logits", "lenet_fixed_logits"):
        logits = np.asarray(references[name].observation.value)
        assert logits.shape == (4, 10)
        closest = min(np.abs(logits[i] - logits[j]).max() for i in range(4) for j in range(i))
        assert closest > 0.05, (name, closest)


def test_the_test_labels_are_nowhere_in_the_sandbox(graded, lab3_course):
    mallory = graded["mallory"]
    assert (mallory.status, mallory.score) == ("graded", 0.0)
    if not mallory.sandboxed:
        pytest.skip(f"bubblewrap cannot run here ({probe().reason}): the snooping cell ran unsandboxed")
    nb = nbformat.read(lab3_course.autograded / "mallory" / LAB / f"{LAB}.ipynb", as_version=4)
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    report = json.loads(text.split("SNOOP ", 1)[1].splitlines()[0])
    assert report["root"] == SANDBOX_DATA
    found = dict(report["found"])
    assert f"{SANDBOX_DATA}/fashion_mnist/test_images.npy" in found  # the data mount works
    assert all(path.startswith(f"{SANDBOX_DATA}/fashion_mnist/") for path in found)
    with gzip.open(FASHION_MNIST_SOURCE / "t10k-labels-idx1-ubyte.gz") as f:
        secrets = {
            hashlib.sha256(f.read()).hexdigest(),
            sha256_file(lab3_course.data / "labels" / "fashion_mnist_test.npy"),
        }
    assert not set(found.values()) & secrets
    assert report["opened"] and not any(
        v.startswith("READ") and v.split()[1] in secrets for v in report["opened"].values()
    )
    assert all(not v.startswith("READ") for path, v in report["opened"].items() if "labels/" in path)


def test_the_committed_release_and_solutions_match_a_fresh_build(lab3_course):
    assert_committed_lab_matches_the_source(lab3_course, LAB)


def test_a_missing_data_set_names_the_command(tmp_path, monkeypatch):
    assert_data_cell_names_the_command(LAB, tmp_path, monkeypatch)
