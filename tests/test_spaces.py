"""The SearchSpace contract, on both spaces of the real benchmarks."""

import pytest

from tfnas.spaces.base import SearchSpace
from tfnas.spaces.nasbench_bert.space import NasBenchBERT
from tfnas.spaces.nasbench_nlp.recipe import RecipeError
from tfnas.spaces.nasbench_nlp.space import NasBenchNLP


@pytest.fixture(scope="module")
def spaces(data_dir):
    return [NasBenchNLP(data_dir / "nasbench_nlp" / "train_logs_wikitext-2.zip", generate=2),
            NasBenchBERT(data_dir / "nasbench_bert" / "BERT_benchmark.json", generate=2)]


def test_both_spaces_follow_the_protocol_and_name_their_family(spaces):
    nlp, bert = spaces
    assert all(isinstance(s, SearchSpace) for s in spaces)
    assert (nlp.name, nlp.family, bert.name, bert.family) == ("nasbench_nlp", "rnn", "nasbench_bert", "bert")
    assert len(nlp) == 345 + 2 and len(bert) == 500 + 2


def test_index_of_finds_the_first_entry_of_a_spec_in_any_form(spaces):
    nlp, bert = spaces
    lstm = nlp[1].spec
    assert nlp.index_of(lstm) == nlp.index_of(lstm.to_dict()) == nlp.index_of(lstm.to_json()) == 1
    # a repeated recipe is found at its first index, a generated cell at its own
    rep = next(a for a in (nlp[i] for i in range(345)) if "same_recipe_as" in a.meta)
    assert nlp.index_of(rep.spec) == rep.meta["same_recipe_as"] < rep.index
    assert nlp.index_of(nlp[346].spec) == 346
    assert bert.index_of(bert[17].spec) == 17 and bert.index_of(bert[501].spec) == 501
    with pytest.raises(KeyError, match="not in nasbench_nlp"):
        nlp.index_of({"h_new_0": {"op": "linear", "input": ["x", "h_prev_0"]}})
    with pytest.raises(RecipeError):
        nlp.index_of({"h_new_0": {"op": "conv", "input": ["x"]}})
    with pytest.raises(ValueError, match="hidden_size=100"):
        bert.index_of(dict(bert[0].spec, hidden_size=100))


def test_truth_is_the_benchmark_ground_truth_and_a_copy(spaces):
    nlp, bert = spaces
    t = nlp.truth(1)
    assert t == nlp[1].truth and t["status"] == "OK" and t["test_ppl"] > 1
    t["test_loss"] = -1.0
    assert nlp.truth(1)["test_loss"] != -1.0
    assert set(bert.truth(0)) == {"cola", "mnli", "mrpc", "qnli", "qqp", "rte", "sst", "sts", "glue"}
    assert nlp.truth(345) == {} and bert.truth(500) == {}
