"""Lab 5 (the VAE loss and a debiasing VAE on coloured Fashion-MNIST): built once, graded end to end.

One build and one grading batch for the whole file: the solution, the blank release, and three
students whose bugs sit in different test cells:

    mixer        reconstruction term averaged over the batch (vae_loss); exp(logsigma) as the
                 standard deviation in sampling, while vae_loss reads logsigma as log sigma^2;
                 resampling probabilities not normalised
    flipper      KL term with its sign flipped (vae_loss); torch.normal instead of the
                 reparameterisation trick (sampling); the indicator on the classification term
                 instead of the VAE term (debiasing_loss)
    broadcaster  (B, 1) classification loss + (B,) VAE loss broadcast to (B, B) (debiasing_loss)
    decoder_of_mu  forward decodes mu instead of a sample (DBVAE: caught only with sigma = 1, the
                 other forward check's sigma is 2e-9); resampling probabilities in float32 where the
                 docstring says float64 (which also rounds a float64 mu near a bin edge into the next bin)

debiasing_loss calls vae_loss, so a vae_loss bug also costs the debiasing checks whose values
involve a coat's VAE loss; those losses are asserted too. Of the bugs, only the flipper's
indicator spoils the training for sure (the classifier never sees a negative: accuracy 50 %);
measured over 5 seeds, the mixer's and the broadcaster's DB-VAEs still pass the accuracy checks
(rare group 80-89 %, threshold 74 %).
"""

from __future__ import annotations

import numpy as np
import pytest

from autograder.course import Course
from autograder.data.colored import build as build_colored
from autograder.demo import DemoStudent
from autograder.references import load_references
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
    public_and_hidden,
)

LAB = "lab5_vae_debiasing"
FULL = 14.0
FULL_CELLS = {
    "vae_loss_tests": 2.0,
    "sampling_tests": 2.0,
    "dbvae_tests": 2.0,
    "debiasing_loss_tests": 3.0,
    "resampling_tests": 2.0,
    "accuracy_tests": 3.0,
}

pytestmark = needs_fashion_mnist

VAE_BATCH_MEAN = '''
def vae_loss(x, x_recon, mu, logsigma, kl_weight=KL_WEIGHT):
    """The reconstruction term averaged over the whole batch: the same number for every sample."""
    latent_loss = 0.5 * torch.sum(torch.exp(logsigma) + mu ** 2 - 1.0 - logsigma, dim=1)
    reconstruction_loss = torch.mean(torch.abs(x - x_recon))
    return kl_weight * latent_loss + reconstruction_loss
'''
KL_SIGN_FLIPPED = '''
def vae_loss(x, x_recon, mu, logsigma, kl_weight=KL_WEIGHT):
    """The KL term with its sign flipped."""
    latent_loss = -0.5 * torch.sum(torch.exp(logsigma) + mu ** 2 - 1.0 - logsigma, dim=1)
    reconstruction_loss = torch.abs(x - x_recon).flatten(start_dim=1).mean(dim=1)
    return kl_weight * latent_loss + reconstruction_loss
'''
SAMPLING_LOG_SIGMA = '''
def sampling(mu, logsigma):
    """exp(logsigma) as the standard deviation, while vae_loss reads logsigma as log sigma^2."""
    return mu + torch.exp(logsigma) * torch.randn_like(mu)
'''
SAMPLING_NO_REPARAMETERISATION = '''
def sampling(mu, logsigma):
    """torch.normal draws from the right distribution, but no gradient reaches mu or logsigma."""
    return torch.normal(mu, torch.exp(0.5 * logsigma))
'''
INDICATOR_ON_CLASSIFICATION = '''
def debiasing_loss(x, x_recon, y, y_logit, mu, logsigma, kl_weight=KL_WEIGHT):
    """The indicator on the classification term: negatives train the VAE, never the classifier."""
    classification = F.binary_cross_entropy_with_logits(y_logit, y, reduction="none").reshape(-1)
    indicator = y.reshape(-1)
    per_sample = indicator * classification + vae_loss(x, x_recon, mu, logsigma, kl_weight)
    return per_sample.mean(), per_sample
'''
BROADCAST = '''
def debiasing_loss(x, x_recon, y, y_logit, mu, logsigma, kl_weight=KL_WEIGHT):
    """(B, 1) columns combined with the (B,) VAE loss: (B, B)."""
    classification = F.binary_cross_entropy_with_logits(y_logit, y, reduction="none")
    per_sample = classification + y * vae_loss(x, x_recon, mu, logsigma, kl_weight)
    return per_sample.mean(), per_sample
'''
NOT_NORMALISED = '''
def get_training_sample_probabilities(mu, bins=BINS, smoothing_fac=SMOOTHING):
    """The maximum over latents of normalised weights, not normalised again: sums to more than 1."""
    mu = torch.as_tensor(mu, dtype=torch.float64).cpu()
    n, latent_dim = mu.shape
    p = torch.zeros(n, dtype=torch.float64)
    for j in range(latent_dim):
        values = mu[:, j].contiguous()
        edges = torch.linspace(values.min().item(), values.max().item(), bins + 1, dtype=torch.float64)
        index = torch.bucketize(values, edges[1:-1], right=True)
        density = torch.bincount(index, minlength=bins) / (n * (edges[1] - edges[0]))
        density = (density + smoothing_fac) / (density + smoothing_fac).sum()
        p_j = 1.0 / density[index]
        p = torch.maximum(p, p_j / p_j.sum())
    return p
'''

DECODES_MU = '''
class DBVAE(nn.Module):
    """forward decodes mu, not a sample: right whenever sigma is tiny."""

    def __init__(self, latent_dim, encoder=None, decoder=None):
        super().__init__()
        self.latent_dim = latent_dim
        self.encoder = encoder if encoder is not None else make_classifier(2 * latent_dim + 1)
        self.decoder = decoder if decoder is not None else make_decoder(latent_dim)

    def encode(self, x):
        out = self.encoder(x)
        return out[:, :1], out[:, 1:1 + self.latent_dim], out[:, 1 + self.latent_dim:]

    def forward(self, x):
        y_logit, mu, logsigma = self.encode(x)
        return y_logit, mu, logsigma, self.decoder(mu)

    def predict(self, x):
        return self.encode(x)[0]
'''
FLOAT32_PROBABILITIES = '''
def get_training_sample_probabilities(mu, bins=BINS, smoothing_fac=SMOOTHING):
    """The right values in float32, where the docstring says float64."""
    mu = torch.as_tensor(mu, dtype=torch.float32).cpu()
    n, latent_dim = mu.shape
    p = torch.zeros(n)
    for j in range(latent_dim):
        values = mu[:, j].contiguous()
        edges = torch.linspace(values.min().item(), values.max().item(), bins + 1)
        index = torch.bucketize(values, edges[1:-1], right=True)
        density = torch.bincount(index, minlength=bins) / (n * (edges[1] - edges[0]))
        density = (density + smoothing_fac) / (density + smoothing_fac).sum()
        p_j = 1.0 / density[index]
        p = torch.maximum(p, p_j / p_j.sum())
    return p / p.sum()
'''

STUDENTS = [
    DemoStudent("ada", "the solution"),
    DemoStudent("ben", "the blank release", answers="blank"),
    DemoStudent(
        "mixer",
        "batch-mean reconstruction, exp(logsigma) as sigma, probabilities not normalised",
        replace={
            "vae_loss": VAE_BATCH_MEAN,
            "sampling": SAMPLING_LOG_SIGMA,
            "get_training_sample_probabilities": NOT_NORMALISED,
        },
    ),
    DemoStudent(
        "flipper",
        "KL sign flipped, torch.normal sampling, indicator on the classification term",
        replace={
            "vae_loss": KL_SIGN_FLIPPED,
            "sampling": SAMPLING_NO_REPARAMETERISATION,
            "debiasing_loss": INDICATOR_ON_CLASSIFICATION,
        },
    ),
    DemoStudent(
        "broadcaster", "(B, 1) + (B,) broadcast to (B, B) in the debiasing loss", replace={"debiasing_loss": BROADCAST}
    ),
    DemoStudent(
        "decoder_of_mu",
        "forward decodes mu, not a sample; resampling probabilities in float32",
        replace={"DBVAE": DECODES_MU, "get_training_sample_probabilities": FLOAT32_PROBABILITIES},
    ),
]


@pytest.fixture(scope="session")
def lab5_course(tmp_path_factory) -> Course:
    """A copy of this repository's lab 5 with Fashion-MNIST and its coloured version staged, built from scratch."""
    return build_repo_lab(tmp_path_factory, LAB, ["fashion_mnist", "colored_fashion_mnist"])


@pytest.fixture(scope="module")
def graded(lab5_course):
    """Every submission of this file, graded in one batch: {student: Result}."""
    return grade_class(lab5_course, LAB, STUDENTS)


# ------------------------------------------------------------------------------------------ data


def test_the_colored_data_set_is_imbalanced_as_documented(lab5_course):
    root = lab5_course.data / "colored_fashion_mnist"
    images, labels, colors = (
        np.load(root / f"train_{n}.npy", allow_pickle=False) for n in ("images", "labels", "colors")
    )
    assert images.shape == (10000, 3, 28, 28) and images.dtype == np.uint8
    assert {(y, c): int(np.sum((labels == y) & (colors == c))) for y in (0, 1) for c in (0, 1)} == {
        (1, 0): 4750,
        (1, 1): 250,
        (0, 0): 2500,
        (0, 1): 2500,
    }
    valid_labels, valid_colors = (np.load(root / f"valid_{n}.npy") for n in ("labels", "colors"))
    assert np.bincount(valid_labels * 2 + valid_colors).tolist() == [150, 150, 150, 150]
    # The background carries the colour: more red than green in red images, the other way round in green ones.
    red, green = images[:, 0].mean(axis=(1, 2)), images[:, 1].mean(axis=(1, 2))
    assert np.all((red > green) == (colors == 0)) and np.all((green > red) == (colors == 1))

    test_colors = np.load(root / "test_colors.npy")
    test_labels = lab5_course.held_out_labels("colored_fashion_mnist_test")
    rare_labels = lab5_course.held_out_labels("colored_fashion_mnist_test_rare")
    assert np.load(root / "test_images.npy").shape == (2000, 3, 28, 28)
    assert np.bincount(test_labels * 2 + test_colors).tolist() == [500, 500, 500, 500]
    assert np.array_equal(rare_labels, test_labels[test_colors == 1])  # the rare group: every green test image
    assert sorted(p.name for p in root.iterdir()) == [
        "README.txt",
        "test_colors.npy",
        "test_images.npy",
        "train_colors.npy",
        "train_images.npy",
        "train_labels.npy",
        "valid_colors.npy",
        "valid_images.npy",
        "valid_labels.npy",
    ]  # no test labels here


def test_the_colored_data_set_is_deterministic_and_refuses_a_short_source():
    """Fixed seed (numpy's PCG64): the same inputs give the same files; too few coats is an error."""
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(10), 800)
    images = rng.integers(0, 256, (8000, 28, 28), dtype=np.uint8)
    test_labels = np.repeat(np.arange(10), 1000)
    test_images = rng.integers(0, 256, (10000, 28, 28), dtype=np.uint8)
    with pytest.raises(Exception, match="too small"):
        build_colored(images, labels, test_images, test_labels)  # 800 coats: not enough
    labels = np.repeat(np.arange(10), 5400)
    images = np.zeros((54000, 28, 28), np.uint8)
    a = build_colored(images, labels, test_images, test_labels)
    b = build_colored(images, labels, test_images, test_labels)
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


# ------------------------------------------------------------------------------------------ build


def test_committed_release_and_solutions_match_the_source(lab5_course):
    assert_committed_lab_matches_the_source(lab5_course, LAB)


def test_every_exercise_has_public_and_hidden_checks(lab5_course):
    references = load_references(lab5_course.references_file(LAB))
    assert public_and_hidden(references) == {grade_id: {False, True} for grade_id in FULL_CELLS}
    assert {n for n, r in references.items() if r.observation.kind == "accuracy"} == {
        "dbvae_rare_accuracy",
        "dbvae_test_accuracy",
        "baseline_rare_accuracy",
    }
    assert all(references[n].hidden for n in ("dbvae_rare_accuracy", "dbvae_test_accuracy", "baseline_rare_accuracy"))


# ------------------------------------------------------------------------------------------ grading


def test_the_solution_scores_full_marks(graded):
    messages = assert_full_marks(graded["ada"], FULL_CELLS)
    assert "on 1000 held-out examples (at least 74% needed)" in messages["dbvae_rare_accuracy"]
    assert "on 2000 held-out examples (at least 80% needed)" in messages["dbvae_test_accuracy"]


def test_the_blank_release_runs_to_the_end_and_scores_zero(graded):
    failed = assert_graded_zero(graded["ben"], FULL_CELLS)
    assert "the test cell raised NotImplementedError" in failed["vae_loss_values"]
    assert "the test cell raised NameError" in failed["dbvae_rare_accuracy"]


def test_the_written_reflection_waits_for_a_ta_and_its_rubric_stays_private(lab5_course, graded):
    """MIT's reflection on what the debiasing changed: 4 points a TA grades by rubric. The run awards
    none of them (result max_score is the autograded 14), every submission has them pending, and the
    release carries the question without the rubric or the model answer."""
    from autograder.grading.review import points_to_grade
    from autograder.rubrics import load_rubrics, rubrics_file

    assert {s: r.max_score for s, r in graded.items()} == dict.fromkeys(graded, FULL)
    assert points_to_grade(lab5_course, LAB) == dict.fromkeys(graded, 4.0)
    rubric = load_rubrics(rubrics_file(lab5_course, LAB))["debiasing_reflection"]
    assert rubric.points == 4.0 and len(rubric.criteria) == 4 and "green coats" in rubric.model_answer
    release = (lab5_course.release / LAB / f"{LAB}.ipynb").read_text()
    assert "what did the debiasing change?" in release
    assert rubric.model_answer.splitlines()[0] not in release and rubric.criteria[0].text not in release


EXPECTED = {
    "mixer": (
        {"vae_loss_tests": 1.0, "sampling_tests": 1.142857, "debiasing_loss_tests": 1.0, "resampling_tests": 0.4},
        {
            "vae_loss_values",
            "vae_loss_reconstruction_only",
            "sampling_variance",
            "sampling_variance_other_sigmas",
            "sampling_seeded_draw",
            "debias_per_sample_values",
            "debias_loss_value",
            "debias_no_reconstruction_grad_for_negatives",
            "debias_vae_term_added_for_coats",
            "resample_sums_to_one",
            "resample_values",
            "resample_values_bins5",
            "resample_sums_to_one_bins5",
            "resample_accepts_an_array",
            "resample_float64_precision",
        },
    ),  # its probabilities are float64, as the docstring says
    "flipper": (
        {"vae_loss_tests": 1.0, "sampling_tests": 1.428571, "debiasing_loss_tests": 0.0, "accuracy_tests": 0.0},
        {
            "vae_loss_values",
            "vae_loss_kl_only",
            "sampling_grad_mu",
            "sampling_grad_reaches_logsigma",
            "debias_per_sample_values",
            "debias_loss_value",
            "debias_no_reconstruction_grad_for_negatives",
            "debias_classification_only_for_negatives",
            "debias_vae_term_added_for_coats",
            "dbvae_rare_accuracy",
            "dbvae_test_accuracy",
        },
    ),  # torch.normal(mu, std) draws the same values as mu + std * randn_like(mu): it passes the seeded draw
    "decoder_of_mu": (
        {"dbvae_tests": 1.6, "resampling_tests": 1.2},
        {"dbvae_forward_samples_with_sigma_1", "resample_float64", "resample_float64_precision"},
    ),  # the DB-VAE still trains (a deterministic autoencoder) and passes the accuracy checks
    "broadcaster": (
        {"debiasing_loss_tests": 1.0},
        {
            "debias_per_sample_shape",
            "debias_per_sample_values",
            "debias_loss_value",
            "debias_no_reconstruction_grad_for_negatives",
            "debias_vae_term_added_for_coats",
        },
    ),
}


@pytest.mark.parametrize("student", sorted(EXPECTED))
def test_each_bug_costs_exactly_its_checks(graded, student):
    result = graded[student]
    cells, failed = EXPECTED[student]
    assert result.status == "graded"
    assert_costs_exactly(result, FULL_CELLS, FULL, cells, failed)


MESSAGES = {
    "mixer": {
        "vae_loss_reconstruction_only": "not over the whole batch",
        "sampling_variance": "standard deviation is exp(0.5 * logsigma)",
        "sampling_seeded_draw": "eps = torch.randn_like(mu)",
        "resample_sums_to_one": "normalise the final probabilities",
        "debias_no_reconstruction_grad_for_negatives": "a vae_loss averaged over the batch",
    },
    "flipper": {
        "vae_loss_kl_only": "the sign is flipped",
        "sampling_grad_mu": "torch.normal(mu, sigma) draws without a gradient",
        "debias_classification_only_for_negatives": "the indicator goes on the VAE term",
        "dbvae_rare_accuracy": "on 1000 held-out examples, at least 74% needed",
    },
    "broadcaster": {
        "debias_per_sample_shape": "broadcast to (N, N)",
    },
    "decoder_of_mu": {
        "dbvae_forward_samples_with_sigma_1": "decoding mu gives standard deviation 0",
        "resample_float64": "float64, as the docstring says",
        "resample_float64_precision": "a value 1e-10 below a bin edge lands in the next bin",
    },
}


@pytest.mark.parametrize("student", sorted(MESSAGES))
def test_the_failure_messages_name_the_cause(graded, student):
    assert_messages_name_the_cause(graded[student], MESSAGES[student])


def test_a_missing_data_set_names_the_command(tmp_path, monkeypatch):
    assert_data_cell_names_the_command(LAB, tmp_path, monkeypatch)
