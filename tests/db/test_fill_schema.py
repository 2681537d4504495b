"""Schema version 2: a version-1 store gains the composition-filling tables; their rows round-trip."""
from __future__ import annotations

import pytest
from ase.build import bulk

from rlcsp.db import schema
from rlcsp.calculators.espresso import DftOutcome, DftResult
from rlcsp.db import Store


def test_version_1_store_is_migrated_to_the_fill_tables(db_url, monkeypatch):
    with monkeypatch.context() as patch:
        patch.setattr(schema, "SCHEMA_VERSION", 1)
        patch.setattr(schema, "TABLES", {k: v for k, v in schema.TABLES.items()
                                            if k not in schema.FILL_TABLES})
        patch.setattr(schema, "INDEXES", {k: v for k, v in schema.INDEXES.items()
                                             if k not in schema.FILL_INDEXES})
        old = Store(db_url)
        with pytest.raises(Exception):
            old.db.query("SELECT COUNT(*) FROM gap_models")
        old.close()
    store = Store(db_url)
    assert store.db.query("SELECT MAX(version) FROM schema_version")[0][0] == schema.SCHEMA_VERSION
    run_id = store.create_run({"x": 1}, "fill", "NaCl", "dqn", 0, "hybrid", "test")
    result = DftResult(DftOutcome.OK, band_gap=3.8, key="k1", wall_s=1.5)
    store.log_dft_call(run_id, 30, bulk("NaCl", "rocksalt", a=5.6).get_chemical_formula(), result, model_gap=2.0)
    store.add_gap_model("m", 1, "fit", 10, "state-text", run_id=run_id)
    store.add_gap_model("m", 2, "finetune", 11, "state-2", run_id=run_id, episode=30)
    store.log_finetune("m", 2, run_id, 30, [1.0, 0.5], [2.0, 2.5], 3.8)
    store.log_metrics(run_id, 100, {"losses/td_loss": 0.1})
    store.record_episode(run_id, "dqn", 30, 0.5, {"formula": "NaCl"})
    assert store.fill_dft_calls(run_id) == [{"episode": 30, "cache_key": "k1", "outcome": "ok", "formula": "ClNa",
                                             "band_gap": 3.8, "model_gap": 2.0, "wall_s": 1.5, "from_cache": 0}]
    assert [(m["version"], m["reason"]) for m in store.gap_models("m")] == [(1, "fit"), (2, "finetune")]
    assert [s["loss"] for s in store.finetune_steps("m")] == [1.0, 0.5]
    store.drop_fill_after(run_id, 29, 99)
    assert store.fill_dft_calls(run_id) == [] and store.finetune_steps("m") == [] and store.episodes(run_id) == []
    assert [m["version"] for m in store.gap_models("m")] == [1] and store.metrics(run_id, "losses/td_loss") == []
