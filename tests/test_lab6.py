"""Lab 6 (attention, a character Transformer, LoRA): built from scratch once, then graded end to end.

Six submissions in one batch: the solution, the blank release, and four students with bugs:

    unscaled  no 1/sqrt(d) in the attention, heads merged without the transpose
    late      the mask applied after the softmax, an upper- instead of lower-triangular causal mask
    sideways  the softmax over the queries instead of the keys, sin and cos swapped in the positional
              encoding
    careless  LoRA's B drawn at random instead of zeros, the masked loss divided by every position
              instead of the masked ones, top-k ignored while generating; and valid variations that
              cost nothing (einsum attention with -1e9 for the masked scores, heads merged by
              permute + view, the LoRA update as two F.linear calls)

Each of them also has one bug of Part B (seq2seq with additive attention, transposing melodies):

    unscaled  the teacher-forced loss without the shift (scored on the token it read)
    late      the additive attention without the padding mask
    sideways  the additive attention's softmax over the batch instead of the positions
    careless  greedy decoding that ignores the end token (writes on past it, never stops early)

An attention bug spoils everything built on it (multi-head attention, the block, the model, the
losses computed with it, its training, its tunes and its fine-tuning): those checks, DOWNSTREAM
below, fail for each of the first three students too. The sets are exactly what each submission
loses, and the messages of the checks aimed at each bug name it.
"""

from __future__ import annotations

import pytest

from autograder.course import Course
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
    failed_checks,
    grade_class,
    public_and_hidden,
)

LAB = "lab6_attention"
FULL_CELLS = {
    "attention_tests": 4.0,
    "mask_tests": 2.0,
    "heads_tests": 2.0,
    "mha_tests": 2.0,
    "pe_tests": 2.0,
    "block_tests": 3.0,
    "encoder_tests": 2.0,
    "additive_attention_tests": 3.0,
    "decoder_tests": 2.0,
    "seq2seq_loss_tests": 2.0,
    "greedy_decode_tests": 3.0,
    "s2s_training_tests": 2.0,
    "transpose_accuracy_tests": 2.0,
    "char_transformer_tests": 2.0,
    "lm_loss_tests": 2.0,
    "training_tests": 2.0,
    "generate_tests": 3.0,
    "abc_tests": 1.0,
    "lora_tests": 3.0,
    "add_lora_tests": 2.0,
    "masked_loss_tests": 2.0,
    "finetune_tests": 3.0,
}
FULL = sum(FULL_CELLS.values())

_ATTENTION = '''
def scaled_dot_product_attention(q, k, v, mask=None):
    """{doc}"""
    scores = q @ k.transpose(-2, -1){scale}
    if mask is not None and {before}:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim={dim})
    if mask is not None and not {before}:
        weights = weights.masked_fill(~mask, 0.0)
    return weights @ v, weights
'''
UNSCALED = _ATTENTION.format(doc="No division by sqrt(d).", scale="", before=True, dim=-1)
MASK_AFTER_SOFTMAX = _ATTENTION.format(
    doc="Masked weights zeroed after the softmax.", scale=" / math.sqrt(q.shape[-1])", before=False, dim=-1
)
SOFTMAX_OVER_QUERIES = _ATTENTION.format(
    doc="The softmax over the queries.", scale=" / math.sqrt(q.shape[-1])", before=True, dim=-2
)
UPPER_TRIANGLE = '''
def causal_mask(length, device=None):
    """Upper-triangular: every position sees the future."""
    return torch.triu(torch.ones(length, length, dtype=torch.bool, device=device))
'''
MERGE_WITHOUT_TRANSPOSE = '''
def merge_heads(x):
    """Reshaped straight back: positions and heads mixed."""
    B, h, L, dh = x.shape
    return x.reshape(B, L, h * dh)
'''
SIN_COS_SWAPPED = '''
def sinusoidal_positional_encoding(length, d_model):
    """cos in the even columns, sin in the odd ones."""
    positions = torch.arange(length, dtype=torch.float32)[:, None]
    frequencies = 10000.0 ** (-torch.arange(0, d_model, 2, dtype=torch.float32) / d_model)
    pe = torch.zeros(length, d_model)
    pe[:, 0::2] = torch.cos(positions * frequencies)
    pe[:, 1::2] = torch.sin(positions * frequencies)
    return pe
'''
_LORA = '''
class LoRALinear(nn.Module):
    """{doc}"""

    def __init__(self, base, rank=4, alpha=8.0):
        super().__init__()
        self.base = base
        for p in self.base.parameters():
            p.requires_grad_(False)
        self.A = nn.Parameter(torch.randn(rank, base.in_features) / math.sqrt(base.in_features))
        self.B = nn.Parameter({b_init})
        self.scale = alpha / rank

    def forward(self, x):
        return {forward}
'''
B_RANDOM = _LORA.format(
    doc="B drawn at random like A (the update written as two F.linear calls, which is valid).",
    b_init="torch.randn(base.out_features, rank) / math.sqrt(rank)",
    forward="self.base(x) + F.linear(F.linear(x, self.A), self.B) * self.scale",
)
MEAN_OVER_EVERY_POSITION = '''
def masked_lm_loss(model, windows, mask):
    """Divided by B * L instead of the number of masked positions."""
    logits = model(windows[:, :-1])
    losses = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), windows[:, 1:].reshape(-1), reduction="none")
    return (losses * mask.reshape(-1).float()).mean()
'''
TOP_K_IGNORED = '''
def generate(model, start_string, length, temperature=1.0, top_k=None, generator=None):
    """top_k never applied."""
    model.eval()
    ids = [char2idx[c] for c in start_string]
    with torch.no_grad():
        for _ in range(length):
            logits = model(torch.tensor([ids[-model.context:]], device=next(model.parameters()).device))[0, -1].cpu()
            probs = torch.softmax(logits / temperature, dim=-1)
            ids.append(int(torch.multinomial(probs, 1, generator=generator)))
    return start_string + "".join(str(idx2char[i]) for i in ids[len(start_string):])
'''
EINSUM_ATTENTION = '''
def scaled_dot_product_attention(q, k, v, mask=None):
    """Valid: einsum, F.softmax, and a large negative number instead of -inf (no row is fully masked)."""
    scores = torch.einsum("...id,...jd->...ij", q, k) * q.shape[-1] ** -0.5
    if mask is not None:
        scores = torch.where(mask, scores, torch.tensor(-1e9))
    weights = F.softmax(scores, dim=-1)
    return torch.einsum("...ij,...jd->...id", weights, v), weights
'''
PERMUTE_MERGE = '''
def merge_heads(x):
    """Valid: permute, contiguous, view."""
    return x.permute(0, 2, 1, 3).contiguous().view(x.shape[0], x.shape[2], -1)
'''

_ADDITIVE = '''
class AdditiveAttention(nn.Module):
    """{doc}"""

    def __init__(self, query_size, key_size, attention_size):
        super().__init__()
        self.W_query = nn.Linear(query_size, attention_size, bias=False)
        self.W_key = nn.Linear(key_size, attention_size)
        self.v = nn.Linear(attention_size, 1, bias=False)

    def forward(self, query, keys, mask):
        scores = self.v(torch.tanh(self.W_query(query)[:, None, :] + self.W_key(keys))).squeeze(-1)
        if {masked}:
            scores = scores.masked_fill(~mask, float("-inf"))
        weights = torch.softmax(scores, dim={dim})
        return (weights[:, :, None] * keys).sum(dim=1), weights
'''
ADDITIVE_NO_MASK = _ADDITIVE.format(doc="No padding mask: the padding is attended to.", masked=False, dim=-1)
ADDITIVE_SOFTMAX_OVER_BATCH = _ADDITIVE.format(doc="The softmax over the batch axis.", masked=True, dim=0)
LOSS_WITHOUT_SHIFT = '''
def seq2seq_loss(model, src, src_lengths, tgt):
    """Scored on the token it read: no teacher-forcing shift."""
    keys, hidden, mask = model.encode(src, src_lengths)
    logits = []
    for t in range(tgt.shape[1] - 1):
        step_logits, hidden, _ = model.decoder(tgt[:, t], hidden, keys, mask)
        logits.append(step_logits)
    logits = torch.stack(logits, dim=1)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt[:, :-1].reshape(-1), ignore_index=PAD)
'''
DECODE_IGNORES_EOS = '''
def greedy_decode(model, src, src_lengths, max_length):
    """Always max_length steps, writing on past the end token."""
    with torch.no_grad():
        keys, hidden, mask = model.encode(src, src_lengths)
        prev = torch.full((src.shape[0],), BOS, dtype=torch.long, device=src.device)
        tokens, weights = [], []
        for _ in range(max_length):
            logits, hidden, step_weights = model.decoder(prev, hidden, keys, mask)
            prev = logits.argmax(dim=-1)
            tokens.append(prev)
            weights.append(step_weights)
    return torch.stack(tokens, dim=1), torch.stack(weights, dim=1)
'''


@pytest.fixture(scope="module")
def lab6_course(tmp_path_factory) -> Course:
    """This repository's lab 6, built from scratch, with Part B's held-out melodies staged (conftest's
    LAB_DATASETS: `transpose`; music21's corpus, for Parts C and D, needs no staged data)."""
    return build_repo_lab(tmp_path_factory, LAB)


@pytest.fixture(scope="module")
def graded(lab6_course):
    students = [
        DemoStudent("solution", "the instructor's solution"),
        DemoStudent("blank", "the release as is", answers="blank"),
        DemoStudent(
            "unscaled",
            "no 1/sqrt(d), heads merged in the wrong order, the seq2seq loss without the shift",
            replace={
                "scaled_dot_product_attention": UNSCALED,
                "merge_heads": MERGE_WITHOUT_TRANSPOSE,
                "seq2seq_loss": LOSS_WITHOUT_SHIFT,
            },
        ),
        DemoStudent(
            "late",
            "mask after the softmax, upper-triangular causal mask, additive attention without the padding mask",
            replace={
                "scaled_dot_product_attention": MASK_AFTER_SOFTMAX,
                "causal_mask": UPPER_TRIANGLE,
                "AdditiveAttention": ADDITIVE_NO_MASK,
            },
        ),
        DemoStudent(
            "sideways",
            "softmax over the queries, sin and cos swapped, additive attention's softmax over the batch",
            replace={
                "scaled_dot_product_attention": SOFTMAX_OVER_QUERIES,
                "sinusoidal_positional_encoding": SIN_COS_SWAPPED,
                "AdditiveAttention": ADDITIVE_SOFTMAX_OVER_BATCH,
            },
        ),
        DemoStudent(
            "careless",
            "LoRA's B random, masked loss over every position, top-k ignored, greedy decoding past the end token; "
            "valid einsum attention and permute merge",
            replace={
                "scaled_dot_product_attention": EINSUM_ATTENTION,
                "merge_heads": PERMUTE_MERGE,
                "LoRALinear": B_RANDOM,
                "masked_lm_loss": MEAN_OVER_EVERY_POSITION,
                "generate": TOP_K_IGNORED,
                "greedy_decode": DECODE_IGNORES_EOS,
            },
        ),
    ]
    return grade_class(lab6_course, LAB, students)


def test_committed_release_and_solutions_match_the_source(lab6_course):
    assert_committed_lab_matches_the_source(lab6_course, LAB)


def test_the_data_cell_says_to_stage_the_melodies(tmp_path, monkeypatch):
    assert_data_cell_names_the_command(LAB, tmp_path, monkeypatch)


def test_every_exercise_has_public_and_hidden_checks(lab6_course):
    references = load_references(lab6_course.references_file(LAB))
    assert public_and_hidden(references) == {grade_id: {False, True} for grade_id in FULL_CELLS}


def test_the_solution_scores_full_marks(graded):
    assert_full_marks(graded["solution"], FULL_CELLS)


def test_the_blank_release_runs_to_the_end_and_scores_zero(graded):
    failed = assert_graded_zero(graded["blank"], FULL_CELLS)
    assert "NotImplementedError" in failed["attention_output_hidden"]
    assert "NotImplementedError" in failed["encoder_final_is_the_last_real_state"]


# What every attention bug costs beyond its own cell: everything computed with the student's attention.
DOWNSTREAM = {
    "attention_padding_mask",
    "attention_causal_matches_torch",
    "causal_attention_ignores_the_future",
    "mha_matches_torch",
    "block_matches_torch",
    "char_transformer_logits",
    "char_transformer_logits_hidden",
    "char_transformer_is_causal",
    "char_transformer_shorter_window",
    "lm_loss_fixture",
    "lm_loss_hidden",
    "generate_temperature_fixture",
    "share_of_valid_abc_tunes",
    "add_lora_keeps_the_output",
    "masked_loss_fixture",
    "masked_loss_hidden",
    "masked_loss_ignores_unmasked_targets",
    "essen_nll_improves",
}
DOWNSTREAM_CELLS = {
    "mha_tests": 0.0,
    "block_tests": 1.5,
    "char_transformer_tests": 0.0,
    "lm_loss_tests": 1.0,
    "abc_tests": 0.0,
    "add_lora_tests": 1.0,
    "masked_loss_tests": 0.666667,
    "finetune_tests": 2.0,
}
# Part B's bugs (seq2seq): what each costs there, its own cells and everything computed with the buggy piece.
_DECODER_AND_AFTER = {"decoder_step_fixture", "decoder_step_hidden", "seq2seq_loss_fixture", "seq2seq_loss_hidden"}
_DECODER_AND_AFTER |= {"seq2seq_loss_ignores_padding", "greedy_decode_fixture", "greedy_decode_hidden"}
_DECODER_AND_AFTER |= {
    "greedy_decode_stops_when_all_ended",
    "greedy_decode_weights_shape",
    "greedy_decode_weights_hidden",
}
_TRAINED = {"s2s_validation_token_accuracy", "s2s_validation_accuracy_threshold", "s2s_validation_exact_match"}
_TRAINED |= {"transpose_token_accuracy"}
S2S_BUGS = {
    # scored on the token it read: the loss checks fail, and the model learns to copy (the loss falls, which
    # s2s_training_loss_fell cannot tell) and transposes nothing
    "unscaled": (
        {"seq2seq_loss_tests": 0.666667, "s2s_training_tests": 0.666667, "transpose_accuracy_tests": 0.0},
        {"seq2seq_loss_fixture", "seq2seq_loss_hidden", "seq2seq_loss_ignores_padding"} | _TRAINED,
    ),
    # no padding mask: every fixture with padding differs (its weights still sum to 1); training learns to look
    # past the padding (0.992-0.997 validation token accuracy in trials), so the trained checks pass
    "late": (
        {
            "additive_attention_tests": 0.75,
            "decoder_tests": 0.0,
            "greedy_decode_tests": 0.75,
            "seq2seq_loss_tests": 0.666667,
        },
        {"additive_attention_fixture", "additive_attention_hidden", "additive_context_ignores_padding"}
        | {"additive_padding_gets_zero"}
        | _DECODER_AND_AFTER,
    ),
    # the softmax over the batch mixes melodies (masked positions still get 0): nothing downstream is right and
    # training stalls (validation token accuracy 0.34)
    "sideways": (
        {
            "additive_attention_tests": 0.75,
            "decoder_tests": 0.0,
            "seq2seq_loss_tests": 0.666667,
            "greedy_decode_tests": 0.0,
            "s2s_training_tests": 0.0,
            "transpose_accuracy_tests": 0.0,
        },
        {"additive_attention_fixture", "additive_attention_hidden", "additive_context_ignores_padding"}
        | {"additive_weights_sum_to_one", "greedy_decode_pads_after_eos", "s2s_training_loss_fell"}
        | _DECODER_AND_AFTER
        | _TRAINED,
    ),
    # decoding past the end token: every decoding check; the predictions are laid out up to each melody's end
    # token, so training and the held-out accuracy do not see it
    "careless": (
        {"greedy_decode_tests": 0.0},
        {"greedy_decode_fixture", "greedy_decode_hidden", "greedy_decode_pads_after_eos"}
        | {"greedy_decode_stops_when_all_ended", "greedy_decode_weights_shape", "greedy_decode_weights_hidden"},
    ),
}
EXPECTED = {
    "unscaled": (
        {
            **DOWNSTREAM_CELLS,
            "attention_tests": 1.333333,
            "mask_tests": 1.333333,
            "heads_tests": 0.666667,
            "generate_tests": 0.75,
        },
        DOWNSTREAM
        | {"attention_output", "attention_output_hidden", "attention_scale", "merge_heads_order", "merge_undoes_split"}
        | {"mha_output", "block_output", "generate_top_k_1_is_greedy", "generate_beyond_the_context"},
    ),
    "late": (
        {**DOWNSTREAM_CELLS, "attention_tests": 2.0, "mask_tests": 0.666667, "generate_tests": 1.5},
        DOWNSTREAM
        | {"attention_weights_sum_to_one", "causal_mask_3", "causal_mask_is_lower_triangular"}
        | {"generate_top_k_1_is_greedy"},
    ),  # without a mask its attention is right: mha_output and block_output pass
    "sideways": (
        {**DOWNSTREAM_CELLS, "attention_tests": 0.0, "mask_tests": 1.333333, "pe_tests": 0.0, "generate_tests": 0.75},
        DOWNSTREAM
        | {"attention_output", "attention_output_hidden", "attention_scale", "attention_weights_sum_to_one"}
        | {"attention_masked_keys_get_zero", "pe_fixture", "pe_hidden", "pe_position_zero"}
        | {"mha_output", "block_output", "generate_top_k_fixture", "generate_beyond_the_context"},
    ),
    "careless": (
        {
            "lora_tests": 2.0,
            "add_lora_tests": 1.0,
            "masked_loss_tests": 0.666667,
            "generate_tests": 0.75,
            "finetune_tests": 2.0,
        },
        {"lora_unchanged_at_init", "lora_starts_as_the_base", "lora_step_moves_only_the_factors"}
        | {"add_lora_keeps_the_output", "essen_nll_improves"}
        | {"masked_loss_fixture", "masked_loss_hidden", "masked_loss_ignores_unmasked_targets"}
        | {"generate_top_k_1_is_greedy", "generate_top_k_fixture", "generate_beyond_the_context"},
    ),  # the valid einsum attention and permute merge cost nothing
}
EXPECTED = {
    student: ({**cells, **S2S_BUGS[student][0]}, failed | S2S_BUGS[student][1])
    for student, (cells, failed) in EXPECTED.items()
}
# Training outcomes near their limit for a buggy student (the held-out gain of the fine-tuning was 0.54-0.59
# against a limit of 0.6 here): float noise of another machine may tip them either way, so either verdict is
# accepted, with the cell's score to match. Every other check of these students is far from its limit.
BORDERLINE = {"sideways": "essen_nll_improves", "careless": "essen_nll_improves"}


@pytest.mark.parametrize("student", sorted(EXPECTED))
def test_each_bug_costs_exactly_its_checks(graded, student):
    result = graded[student]
    cells, failed = EXPECTED[student]
    assert result.status == "graded", result.reason
    borderline = BORDERLINE.get(student)
    if borderline and borderline not in failed_checks(result):  # passed this time: one hidden check of 3 points
        cells, failed = {**cells, "finetune_tests": cells["finetune_tests"] + 1.0}, failed - {borderline}
    assert_costs_exactly(result, FULL_CELLS, FULL, cells, failed)


MESSAGES = {
    "unscaled": {
        "attention_scale": "were not divided by sqrt(d)",
        "merge_heads_order": "heads merged in the wrong order",
        "seq2seq_loss_hidden": "teacher forcing shifts by one",
    },
    "late": {
        "additive_padding_gets_zero": "without the padding mask the decoder attends to padding",
        "attention_weights_sum_to_one": "BEFORE the softmax",
        "causal_mask_is_lower_triangular": "upper-triangular mask",
        "causal_attention_ignores_the_future": "not j >= i",
        "char_transformer_is_causal": "give every block the causal mask",
    },
    "sideways": {
        "attention_output_hidden": "take the softmax over the last axis",
        "pe_position_zero": "sin in the even columns, cos in the odd",
        "additive_weights_sum_to_one": "not over dim=0 (the batch",
    },
    "careless": {
        "lora_starts_as_the_base": "is initialised to zeros",
        "masked_loss_hidden": "not by B * L",
        "generate_top_k_1_is_greedy": "top_k=1 keeps only the most likely character",
        "greedy_decode_pads_after_eos": "decoding that ignores the end token",
    },
}


@pytest.mark.parametrize("student", sorted(MESSAGES))
def test_the_failure_messages_name_the_cause(graded, student):
    assert_messages_name_the_cause(graded[student], MESSAGES[student])
