"""The sweep grammar read into a search space, and trials written back as overrides."""


def test_the_sweep_grammar_maps_onto_params():
    from lmforge.plugins.sweep.space import parse_space, trial_overrides

    fixed, space = parse_space(
        ["optimizer.lr=tag(log,interval(1e-4,1e-2))", "model=choice(rnn,transformer)", "model.n_layer=range(2,8)",
         "preprocess=none,lemma", "trainer.max_steps=3"],
        {"data.batch_size": [8, 16], "optimizer.lr": "interval(0.1,0.2)"},
    )
    assert fixed == ["trainer.max_steps=3"]
    by_name = {p.name: p for p in space}
    assert (by_name["optimizer.lr"].kind, by_name["optimizer.lr"].low, by_name["optimizer.lr"].log) == ("float", 1e-4, True)  # command line wins
    assert by_name["model"].choices == ["rnn", "transformer"] and by_name["preprocess"].choices == ["none", "lemma"]
    assert (by_name["model.n_layer"].kind, by_name["model.n_layer"].low, by_name["model.n_layer"].high) == ("int", 2, 7)
    assert by_name["data.batch_size"].choices == [8, 16]
    assert trial_overrides(fixed, {"optimizer.lr": 0.001, "sample.prompts": ["a b"]}) == ["trainer.max_steps=3", "optimizer.lr=0.001", "sample.prompts=['a b']"]
