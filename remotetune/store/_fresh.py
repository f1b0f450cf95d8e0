"""A new store's schema in one step: what ``_schema.MIGRATIONS`` build, as SQL.

Applying the migrations one by one goes through sqlite_utils (about 0.1 s to import, before
the first trial of a run in a new home). A store with no migration yet gets these statements
instead, and all the migrations are recorded as applied. tests/test_store_schema.py checks
that both ways give the same ``sqlite_master``; when a migration is appended, that test
fails and prints the statements to put here.
"""

from __future__ import annotations

# the migrations these statements stand for, in order
SQUASHED = ("0001_initial", "0002_experiment_created_index", "0003_code_manifests")

STATEMENTS: tuple[str, ...] = (
    (
        'CREATE TABLE "experiments" (\n'
        '   "id" TEXT PRIMARY KEY,\n'
        '   "name" TEXT NOT NULL,\n'
        '   "status" TEXT NOT NULL,\n'
        '   "config" TEXT NOT NULL,\n'
        '   "config_file" TEXT,\n'
        '   "machines" TEXT,\n'
        '   "tuner" TEXT,\n'
        '   "optimize_mode" TEXT,\n'
        '   "max_trial_number" INTEGER,\n'
        '   "max_experiment_duration" REAL,\n'
        '   "trial_concurrency" INTEGER,\n'
        '   "created_at" REAL,\n'
        '   "started_at" REAL,\n'
        '   "ended_at" REAL,\n'
        '   "message" TEXT,\n'
        '   "source" TEXT NOT NULL\n'
        ')'
    ),
    (
        'CREATE TABLE "trials" (\n'
        '   "experiment_id" TEXT REFERENCES "experiments"("id"),\n'
        '   "id" TEXT,\n'
        '   "sequence" INTEGER NOT NULL,\n'
        '   "parameter_id" INTEGER,\n'
        '   "attempt" INTEGER DEFAULT 1,\n'
        '   "retry_of" TEXT,\n'
        '   "parameters" TEXT NOT NULL,\n'
        '   "status" TEXT NOT NULL,\n'
        '   "host" TEXT,\n'
        '   "gpus" TEXT,\n'
        '   "pid" INTEGER,\n'
        '   "trial_dir" TEXT,\n'
        '   "created_at" REAL,\n'
        '   "started_at" REAL,\n'
        '   "ended_at" REAL,\n'
        '   "exit_code" INTEGER,\n'
        '   "final" REAL,\n'
        '   "best_intermediate" REAL,\n'
        '   "latest_intermediate" REAL,\n'
        '   "intermediate_count" INTEGER DEFAULT 0,\n'
        '   "message" TEXT,\n'
        '   "stdout_tail" TEXT,\n'
        '   "stderr_tail" TEXT,\n'
        '   "metrics_offset" INTEGER NOT NULL DEFAULT 0,\n'
        '   PRIMARY KEY ("experiment_id", "id")\n'
        ')'
    ),
    (
        'CREATE INDEX "idx_trials_sequence"\n'
        '    ON "trials" ("experiment_id", "sequence")'
    ),
    (
        'CREATE INDEX "idx_trials_status"\n'
        '    ON "trials" ("experiment_id", "status")'
    ),
    (
        'CREATE TABLE "metrics" (\n'
        '   "experiment_id" TEXT REFERENCES "experiments"("id"),\n'
        '   "trial_id" TEXT,\n'
        '   "seq" INTEGER,\n'
        '   "kind" TEXT NOT NULL,\n'
        '   "value" REAL NOT NULL,\n'
        '   "raw" TEXT NOT NULL,\n'
        '   "time" REAL,\n'
        '   PRIMARY KEY ("experiment_id", "trial_id", "seq")\n'
        ')'
    ),
    (
        'CREATE TABLE "events" (\n'
        '   "id" INTEGER PRIMARY KEY,\n'
        '   "experiment_id" TEXT NOT NULL REFERENCES "experiments"("id"),\n'
        '   "time" REAL NOT NULL,\n'
        '   "kind" TEXT NOT NULL,\n'
        '   "level" TEXT NOT NULL,\n'
        '   "message" TEXT NOT NULL,\n'
        '   "trial_id" TEXT,\n'
        '   "host" TEXT\n'
        ')'
    ),
    (
        'CREATE INDEX "idx_events_experiment"\n'
        '    ON "events" ("experiment_id", "id")'
    ),
    (
        'CREATE TABLE "hosts" (\n'
        '   "experiment_id" TEXT REFERENCES "experiments"("id"),\n'
        '   "host" TEXT,\n'
        '   "reachable" INTEGER NOT NULL,\n'
        '   "gpus" TEXT NOT NULL,\n'
        '   "gpu_holders" TEXT NOT NULL,\n'
        '   "slots" INTEGER,\n'
        '   "running" INTEGER,\n'
        '   "message" TEXT,\n'
        '   "updated_at" REAL,\n'
        '   PRIMARY KEY ("experiment_id", "host")\n'
        ')'
    ),
    (
        'CREATE INDEX "idx_experiments_created"\n'
        '    ON "experiments" ("created_at")'
    ),
    (
        'CREATE TABLE "code_manifests" (\n'
        '   "experiment_id" TEXT PRIMARY KEY REFERENCES "experiments"("id"),\n'
        '   "manifest" TEXT NOT NULL,\n'
        '   "created_at" REAL\n'
        ')'
    ),
)
