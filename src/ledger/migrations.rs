//! Schema migrations: an ordered list, each applied in its own transaction and recorded in
//! `PRAGMA user_version`. A database from a newer build is refused rather than damaged.

use std::time::Instant;

use rusqlite::Connection;

use super::LedgerError;

/// Append only: never edit a migration that has shipped.
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: SCIM users and groups. Hot lookups get their own indexed columns; the full resource
    // is kept as JSON because SCIM resources are open-ended (extensions).
    r#"
    CREATE TABLE users (
        seq            INTEGER PRIMARY KEY,
        id             TEXT NOT NULL UNIQUE,
        user_name      TEXT NOT NULL,
        user_name_key  TEXT NOT NULL UNIQUE,
        external_id    TEXT,
        version        INTEGER NOT NULL,
        created        TEXT NOT NULL,
        last_modified  TEXT NOT NULL,
        body           TEXT NOT NULL
    );
    CREATE INDEX users_external_id ON users(external_id) WHERE external_id IS NOT NULL;

    CREATE TABLE user_emails (
        user_seq   INTEGER NOT NULL REFERENCES users(seq) ON DELETE CASCADE,
        email_key  TEXT NOT NULL
    );
    CREATE INDEX user_emails_key ON user_emails(email_key);
    CREATE INDEX user_emails_user ON user_emails(user_seq);

    CREATE TABLE groups (
        seq               INTEGER PRIMARY KEY,
        id                TEXT NOT NULL UNIQUE,
        display_name      TEXT NOT NULL,
        display_name_key  TEXT NOT NULL,
        external_id       TEXT,
        version           INTEGER NOT NULL,
        created           TEXT NOT NULL,
        last_modified     TEXT NOT NULL,
        body              TEXT NOT NULL
    );
    CREATE INDEX groups_display_name_key ON groups(display_name_key);
    CREATE INDEX groups_external_id ON groups(external_id) WHERE external_id IS NOT NULL;

    CREATE TABLE group_members (
        group_seq    INTEGER NOT NULL REFERENCES groups(seq) ON DELETE CASCADE,
        member_id    TEXT NOT NULL,
        member_type  TEXT NOT NULL,
        display      TEXT,
        UNIQUE (group_seq, member_id)
    );
    CREATE INDEX group_members_member ON group_members(member_id);
    "#,
    // 2: the sync ledger. One row per (user, target) holds the desired state (what the
    // mapping says the target should hold) and the delivered state (what it was last sent);
    // the worker delivers rows where the two differ. Attempts are an append-only history.
    r#"
    CREATE TABLE deliveries (
        user_id          TEXT NOT NULL,
        target           TEXT NOT NULL,
        operation        TEXT NOT NULL,
        payload          TEXT NOT NULL,
        create_only      TEXT NOT NULL,
        password_field   TEXT,
        secret_id        TEXT,
        retain_secret    INTEGER NOT NULL DEFAULT 0,
        desired_hash     TEXT NOT NULL,
        delivered_hash   TEXT,
        remote_id        TEXT,
        state            TEXT NOT NULL,
        attempts         INTEGER NOT NULL DEFAULT 0,
        next_attempt_at  INTEGER NOT NULL,
        last_status      INTEGER,
        last_error       TEXT,
        mapping_version  TEXT NOT NULL,
        changed_at       INTEGER NOT NULL,
        updated_at       INTEGER NOT NULL,
        PRIMARY KEY (user_id, target)
    ) WITHOUT ROWID;
    CREATE INDEX deliveries_due ON deliveries(target, next_attempt_at)
        WHERE state IN ('pending', 'retrying');
    CREATE INDEX deliveries_state ON deliveries(target, state);

    CREATE TABLE delivery_attempts (
        seq              INTEGER PRIMARY KEY,
        at               INTEGER NOT NULL,
        user_id          TEXT NOT NULL,
        target           TEXT NOT NULL,
        operation        TEXT NOT NULL,
        status           INTEGER,
        duration_ms      INTEGER NOT NULL,
        outcome          TEXT NOT NULL,
        error            TEXT,
        payload_hash     TEXT NOT NULL,
        mapping_version  TEXT NOT NULL
    );
    CREATE INDEX delivery_attempts_user ON delivery_attempts(user_id, target, seq);
    CREATE INDEX delivery_attempts_at ON delivery_attempts(at);

    -- Passwords waiting to reach the targets that map them, encrypted with an AEAD.
    CREATE TABLE user_secrets (
        user_id     TEXT PRIMARY KEY,
        secret_id   TEXT NOT NULL,
        nonce       BLOB NOT NULL,
        ciphertext  BLOB NOT NULL,
        created_at  INTEGER NOT NULL
    );

    CREATE TABLE target_controls (
        target  TEXT PRIMARY KEY,
        paused  INTEGER NOT NULL
    );
    "#,
    // 3: the counts per target and state (admin API, CLI, /metrics) also report each
    // target's oldest undelivered change. With `changed_at` in the index they are answered
    // from it alone; before, every count read every ledger row, payload included.
    r#"
    DROP INDEX deliveries_state;
    CREATE INDEX deliveries_state ON deliveries(target, state, changed_at);
    "#,
    // 4: a target that is down or throttling is a property of the target, not of each user.
    // Its circuit (closed, open until `retry_at`, half-open while one probe is out) is kept
    // here so the CLI, which may run in another process, sees it, and a restart resumes it.
    // `failing_since` dates the first failure of a delivery's current state, for the
    // dead-letter age.
    r#"
    ALTER TABLE deliveries ADD COLUMN failing_since INTEGER;
    CREATE TABLE target_circuits (
        target         TEXT PRIMARY KEY,
        state          TEXT NOT NULL,
        failures       INTEGER NOT NULL,
        failed_probes  INTEGER NOT NULL,
        opened_at      INTEGER,
        retry_at       INTEGER,
        last_status    INTEGER,
        last_error     TEXT,
        updated_at     INTEGER NOT NULL
    );
    "#,
    // 5: accounts the bridge took over rather than created: found by their natural key (or
    // after a create answered 409), with the target's id and the names (never the values)
    // of the fields the first update changed, so an admin can review a takeover. And the
    // fields a desired state must never write to such an account (`managed = false`).
    r#"
    ALTER TABLE deliveries ADD COLUMN unmanaged TEXT NOT NULL DEFAULT '[]';
    CREATE TABLE adoptions (
        user_id     TEXT NOT NULL,
        target      TEXT NOT NULL,
        remote_id   TEXT NOT NULL,
        adopted_at  INTEGER NOT NULL,
        changed     TEXT NOT NULL,
        PRIMARY KEY (user_id, target)
    ) WITHOUT ROWID;
    "#,
    // 6: the fields a desired state leaves out because the user's value could not be mapped,
    // as a JSON list of {field, value, reason}; NULL when none. The partial index lets the
    // per-field counts (/metrics, the admin API) read only the rows that have some.
    r#"
    ALTER TABLE deliveries ADD COLUMN warnings TEXT;
    CREATE INDEX deliveries_warnings ON deliveries(target) WHERE warnings IS NOT NULL;
    "#, // 7: the life cycle's words are checked by the database too, so a row no build wrote
    // fails where it is written rather than being read as something else. SQLite adds a
    // CHECK only by rebuilding the table: every column of migrations 2, 4, 5 and 6 is
    // copied and every index recreated.
    r#"
    CREATE TABLE deliveries_checked (
        user_id          TEXT NOT NULL,
        target           TEXT NOT NULL,
        operation        TEXT NOT NULL CHECK (operation IN ('upsert', 'disable', 'delete')),
        payload          TEXT NOT NULL,
        create_only      TEXT NOT NULL,
        password_field   TEXT,
        secret_id        TEXT,
        retain_secret    INTEGER NOT NULL DEFAULT 0,
        desired_hash     TEXT NOT NULL,
        delivered_hash   TEXT,
        remote_id        TEXT,
        state            TEXT NOT NULL
            CHECK (state IN ('pending', 'retrying', 'delivered', 'rejected', 'dead')),
        attempts         INTEGER NOT NULL DEFAULT 0,
        next_attempt_at  INTEGER NOT NULL,
        last_status      INTEGER,
        last_error       TEXT,
        mapping_version  TEXT NOT NULL,
        changed_at       INTEGER NOT NULL,
        updated_at       INTEGER NOT NULL,
        failing_since    INTEGER,
        unmanaged        TEXT NOT NULL DEFAULT '[]',
        warnings         TEXT,
        PRIMARY KEY (user_id, target)
    ) WITHOUT ROWID;
    INSERT INTO deliveries_checked (user_id, target, operation, payload, create_only,
        password_field, secret_id, retain_secret, desired_hash, delivered_hash, remote_id,
        state, attempts, next_attempt_at, last_status, last_error, mapping_version,
        changed_at, updated_at, failing_since, unmanaged, warnings)
    SELECT user_id, target, operation, payload, create_only,
        password_field, secret_id, retain_secret, desired_hash, delivered_hash, remote_id,
        state, attempts, next_attempt_at, last_status, last_error, mapping_version,
        changed_at, updated_at, failing_since, unmanaged, warnings
    FROM deliveries;
    DROP TABLE deliveries;
    ALTER TABLE deliveries_checked RENAME TO deliveries;
    CREATE INDEX deliveries_due ON deliveries(target, next_attempt_at)
        WHERE state IN ('pending', 'retrying');
    CREATE INDEX deliveries_state ON deliveries(target, state, changed_at);
    CREATE INDEX deliveries_warnings ON deliveries(target) WHERE warnings IS NOT NULL;
    "#,
    // 8: reconciliation. Each run and what it found, per (user, target) or per account no
    // user accounts for, with the decision taken; pruned like the history. `reconcile_seen`
    // holds the ids a run's listing met, so that what the ledger knows and the listing did
    // not show is found by a query, not by keeping a whole target in memory. The partial
    // indexes that find a page's accounts in the ledger by target id, and the rows without
    // one by natural key, are made by 9, which rebuilds `deliveries`.
    r#"
    CREATE TABLE reconcile_runs (
        id           INTEGER PRIMARY KEY,
        started_at   INTEGER NOT NULL,
        finished_at  INTEGER,
        target       TEXT,
        apply        INTEGER NOT NULL,
        status       TEXT NOT NULL
            CHECK (status IN ('running', 'finished', 'failed', 'cancelled')),
        counts       TEXT NOT NULL DEFAULT '{}',
        error        TEXT
    );
    CREATE INDEX reconcile_runs_started ON reconcile_runs(started_at);
    CREATE TABLE reconcile_findings (
        seq        INTEGER PRIMARY KEY,
        run_id     INTEGER NOT NULL REFERENCES reconcile_runs(id) ON DELETE CASCADE,
        kind       TEXT NOT NULL CHECK (kind IN ('missing', 'drifted', 'unlinked',
            'orphan_marked', 'orphan_unmarked', 'pending')),
        target     TEXT NOT NULL,
        user_id    TEXT,
        remote_id  TEXT,
        fields     TEXT NOT NULL,
        decision   TEXT NOT NULL,
        error      TEXT
    );
    CREATE INDEX reconcile_findings_run ON reconcile_findings(run_id, kind, seq);
    CREATE INDEX reconcile_findings_user ON reconcile_findings(run_id, target, user_id);
    CREATE TABLE reconcile_seen (
        run_id     INTEGER NOT NULL REFERENCES reconcile_runs(id) ON DELETE CASCADE,
        target     TEXT NOT NULL,
        remote_id  TEXT NOT NULL,
        PRIMARY KEY (run_id, target, remote_id)
    ) WITHOUT ROWID;
    "#,
    // 9: the deprovisioning guard and the operator audit trail.
    // A disable or delete past a target's threshold waits as `held` (the state CHECK is
    // rebuilt as in migration 7, every column copied). `guard_grants` is what the guard
    // let through, per (target, user), so that a retried or released deprovision is not
    // held again; those `counted` make the window (an operator's release or discard stops
    // the earlier ones counting, which starts the window afresh).
    // `deliveries_linked` counts the accounts the bridge holds on a target, the base of
    // `max_percent`. The audit trail is append-only: no build updates it (the trigger
    // refuses it), and only the history's retention deletes from it.
    r#"
    CREATE TABLE deliveries_held (
        user_id          TEXT NOT NULL,
        target           TEXT NOT NULL,
        operation        TEXT NOT NULL CHECK (operation IN ('upsert', 'disable', 'delete')),
        payload          TEXT NOT NULL,
        create_only      TEXT NOT NULL,
        password_field   TEXT,
        secret_id        TEXT,
        retain_secret    INTEGER NOT NULL DEFAULT 0,
        desired_hash     TEXT NOT NULL,
        delivered_hash   TEXT,
        remote_id        TEXT,
        state            TEXT NOT NULL
            CHECK (state IN ('pending', 'retrying', 'delivered', 'rejected', 'dead', 'held')),
        attempts         INTEGER NOT NULL DEFAULT 0,
        next_attempt_at  INTEGER NOT NULL,
        last_status      INTEGER,
        last_error       TEXT,
        mapping_version  TEXT NOT NULL,
        changed_at       INTEGER NOT NULL,
        updated_at       INTEGER NOT NULL,
        failing_since    INTEGER,
        unmanaged        TEXT NOT NULL DEFAULT '[]',
        warnings         TEXT,
        PRIMARY KEY (user_id, target)
    ) WITHOUT ROWID;
    INSERT INTO deliveries_held (user_id, target, operation, payload, create_only,
        password_field, secret_id, retain_secret, desired_hash, delivered_hash, remote_id,
        state, attempts, next_attempt_at, last_status, last_error, mapping_version,
        changed_at, updated_at, failing_since, unmanaged, warnings)
    SELECT user_id, target, operation, payload, create_only,
        password_field, secret_id, retain_secret, desired_hash, delivered_hash, remote_id,
        state, attempts, next_attempt_at, last_status, last_error, mapping_version,
        changed_at, updated_at, failing_since, unmanaged, warnings
    FROM deliveries;
    DROP TABLE deliveries;
    ALTER TABLE deliveries_held RENAME TO deliveries;
    CREATE INDEX deliveries_due ON deliveries(target, next_attempt_at)
        WHERE state IN ('pending', 'retrying');
    CREATE INDEX deliveries_state ON deliveries(target, state, changed_at);
    CREATE INDEX deliveries_warnings ON deliveries(target) WHERE warnings IS NOT NULL;
    CREATE INDEX deliveries_linked ON deliveries(target, remote_id) WHERE remote_id IS NOT NULL;
    CREATE INDEX deliveries_unlinked ON deliveries(target, user_id) WHERE remote_id IS NULL;

    CREATE TABLE guard_grants (
        target        TEXT NOT NULL,
        user_id       TEXT NOT NULL,
        desired_hash  TEXT NOT NULL,
        changed_at    INTEGER NOT NULL,
        operation     TEXT NOT NULL CHECK (operation IN ('disable', 'delete')),
        granted_at    INTEGER NOT NULL,
        counted       INTEGER NOT NULL,
        PRIMARY KEY (target, user_id)
    ) WITHOUT ROWID;
    CREATE INDEX guard_grants_window ON guard_grants(target, granted_at);

    CREATE TABLE audit (
        seq      INTEGER PRIMARY KEY,
        at       INTEGER NOT NULL,
        actor    TEXT NOT NULL,
        action   TEXT NOT NULL,
        target   TEXT,
        user_id  TEXT,
        detail   TEXT NOT NULL,
        outcome  TEXT NOT NULL CHECK (outcome IN ('ok', 'refused', 'failed'))
    );
    CREATE INDEX audit_action ON audit(action, seq);
    CREATE INDEX audit_at ON audit(at);
    CREATE TRIGGER audit_append_only BEFORE UPDATE ON audit
    BEGIN
        SELECT RAISE(ABORT, 'the audit trail is append-only');
    END;
    "#,
    // 10: what the console shows beside the desired state. `delivered_payload` is the body
    // the target last received, kept only while it differs from `payload` (NULL: the same,
    // so storage grows only while a change is pending). `accounts_read` is the account as
    // a reconcile or a sync last read it, per (user, target), secrets left out; `account`
    // NULL: the target held no account for the user.
    r#"
    ALTER TABLE deliveries ADD COLUMN delivered_payload TEXT;
    CREATE TABLE accounts_read (
        user_id    TEXT NOT NULL,
        target     TEXT NOT NULL,
        read_at    INTEGER NOT NULL,
        remote_id  TEXT,
        account    TEXT,
        PRIMARY KEY (user_id, target)
    ) WITHOUT ROWID;
    "#,
    // 11: users whose desired states are still to be planned. A SCIM write of a user
    // commits its mark instead of rendering every target on the writer; the planner renders
    // the user as stored, records the desired states and deletes the mark only if its `seq`
    // is unchanged. `seq` is the rowid: a new or re-marked user takes the next one, so the
    // oldest marks come first. `fresh_secret` names a password given in a change not yet
    // planned; `new` says no desired state was ever recorded for the user.
    //
    // Also: the CHECKs of `deliveries` spelled as ORs of equalities. SQLite evaluates a
    // constant `IN` list of three or more words by building a temporary b-tree each time a
    // row is written: two per desired-state row, about 40% of the writer's instructions
    // for recording one (callgrind). The same words are refused as before. Changing only a
    // CHECK's text in `sqlite_schema` is the procedure SQLite documents for it (ALTER TABLE,
    // "making other kinds of table schema changes"); `replace` leaves columns added by
    // other migrations as they are.
    r#"
    CREATE TABLE plan_queue (
        seq           INTEGER PRIMARY KEY,
        user_id       TEXT NOT NULL UNIQUE,
        fresh_secret  TEXT,
        new           INTEGER NOT NULL DEFAULT 0
    );
    PRAGMA writable_schema = ON;
    UPDATE sqlite_schema SET sql = replace(replace(sql,
        'operation IN (''upsert'', ''disable'', ''delete'')',
        '(operation = ''upsert'' OR operation = ''disable'' OR operation = ''delete'')'),
        'state IN (''pending'', ''retrying'', ''delivered'', ''rejected'', ''dead'', ''held'')',
        '(state = ''pending'' OR state = ''retrying'' OR state = ''delivered'' ' ||
        'OR state = ''rejected'' OR state = ''dead'' OR state = ''held'')')
    WHERE type = 'table' AND name = 'deliveries';
    PRAGMA writable_schema = RESET;
    "#,
    // 12: rows per target
    // and state, kept by triggers so /metrics, the admin API, the CLI and the console read a
    // handful of rows instead of counting the ledger, and every writer keeps them right,
    // including `ledger` commands run from another process. Filled from the rows present. A
    // later migration that rebuilds `deliveries` must create these triggers again, and no
    // writer may use `INSERT OR REPLACE` on it: SQLite fires no delete trigger for the row
    // such an insert replaces.
    r#"
    CREATE TABLE delivery_counts (
        target  TEXT NOT NULL,
        state   TEXT NOT NULL,
        n       INTEGER NOT NULL,
        PRIMARY KEY (target, state)
    ) WITHOUT ROWID;
    INSERT INTO delivery_counts (target, state, n)
        SELECT target, state, COUNT(*) FROM deliveries GROUP BY target, state;
    CREATE TRIGGER delivery_counts_insert AFTER INSERT ON deliveries
    BEGIN
        INSERT INTO delivery_counts (target, state, n) VALUES (NEW.target, NEW.state, 1)
            ON CONFLICT (target, state) DO UPDATE SET n = n + 1;
    END;
    CREATE TRIGGER delivery_counts_delete AFTER DELETE ON deliveries
    BEGIN
        UPDATE delivery_counts SET n = n - 1 WHERE target = OLD.target AND state = OLD.state;
    END;
    CREATE TRIGGER delivery_counts_update AFTER UPDATE OF target, state ON deliveries
        WHEN OLD.target IS NOT NEW.target OR OLD.state IS NOT NEW.state
    BEGIN
        UPDATE delivery_counts SET n = n - 1 WHERE target = OLD.target AND state = OLD.state;
        INSERT INTO delivery_counts (target, state, n) VALUES (NEW.target, NEW.state, 1)
            ON CONFLICT (target, state) DO UPDATE SET n = n + 1;
    END;
    "#,
    // 13: how many users wait to be planned, kept by triggers on `plan_queue` as
    // `delivery_counts` is kept on `deliveries`, so the admin counts read one row however
    // many marks a reload or a burst leaves. Marking a user again is an update of its
    // mark, not an insert, and leaves the count alone. Filled from the marks present. No
    // writer may use `INSERT OR REPLACE` on `plan_queue`: SQLite fires no delete trigger
    // for the row such an insert replaces.
    r#"
    CREATE TABLE plan_queue_count (
        id  INTEGER PRIMARY KEY CHECK (id = 1),
        n   INTEGER NOT NULL
    );
    INSERT INTO plan_queue_count (id, n) SELECT 1, COUNT(*) FROM plan_queue;
    CREATE TRIGGER plan_queue_count_insert AFTER INSERT ON plan_queue
    BEGIN
        UPDATE plan_queue_count SET n = n + 1 WHERE id = 1;
    END;
    CREATE TRIGGER plan_queue_count_delete AFTER DELETE ON plan_queue
    BEGIN
        UPDATE plan_queue_count SET n = n - 1 WHERE id = 1;
    END;
    "#,
    // 14: `deliveries` as a rowid table, its key (user, target) a unique index. A WITHOUT
    // ROWID table keeps whole rows in its interior pages too: with rows of 600-700 bytes an
    // interior page held about five, the tree was six levels deep, and its 2,400 interior
    // pages at 20,000 users filled most of the writer's page cache. Each first delivery grows
    // its row (the account's id, the delivered key) and split a leaf, whose new divider, a
    // whole row, went into the level above. A rowid table's interior pages hold integers,
    // and its rows lie in the order they were planned: a user's four rows, and the users
    // planned together, share a page (BENCHMARKS.md, "The ledger's rows by rowid"). The
    // CHECKs keep their spelling as ORs (migration 11); the counting triggers go with the old
    // table and are created again (migration 12). The copy took 1.0 s for 200,000 rows here;
    // the old table's pages go to the free list, where later writes reuse them.
    r#"
    CREATE TABLE deliveries_by_rowid (
        user_id            TEXT NOT NULL,
        target             TEXT NOT NULL,
        operation          TEXT NOT NULL
            CHECK (operation = 'upsert' OR operation = 'disable' OR operation = 'delete'),
        payload            TEXT NOT NULL,
        create_only        TEXT NOT NULL,
        password_field     TEXT,
        secret_id          TEXT,
        retain_secret      INTEGER NOT NULL DEFAULT 0,
        desired_hash       TEXT NOT NULL,
        delivered_hash     TEXT,
        remote_id          TEXT,
        state              TEXT NOT NULL
            CHECK (state = 'pending' OR state = 'retrying' OR state = 'delivered'
                OR state = 'rejected' OR state = 'dead' OR state = 'held'),
        attempts           INTEGER NOT NULL DEFAULT 0,
        next_attempt_at    INTEGER NOT NULL,
        last_status        INTEGER,
        last_error         TEXT,
        mapping_version    TEXT NOT NULL,
        changed_at         INTEGER NOT NULL,
        updated_at         INTEGER NOT NULL,
        failing_since      INTEGER,
        unmanaged          TEXT NOT NULL DEFAULT '[]',
        warnings           TEXT,
        delivered_payload  TEXT,
        PRIMARY KEY (user_id, target)
    );
    INSERT INTO deliveries_by_rowid (user_id, target, operation, payload, create_only,
        password_field, secret_id, retain_secret, desired_hash, delivered_hash, remote_id,
        state, attempts, next_attempt_at, last_status, last_error, mapping_version,
        changed_at, updated_at, failing_since, unmanaged, warnings, delivered_payload)
    SELECT user_id, target, operation, payload, create_only,
        password_field, secret_id, retain_secret, desired_hash, delivered_hash, remote_id,
        state, attempts, next_attempt_at, last_status, last_error, mapping_version,
        changed_at, updated_at, failing_since, unmanaged, warnings, delivered_payload
    FROM deliveries ORDER BY changed_at, user_id, target;
    DROP TABLE deliveries;
    ALTER TABLE deliveries_by_rowid RENAME TO deliveries;
    CREATE INDEX deliveries_due ON deliveries(target, next_attempt_at)
        WHERE state IN ('pending', 'retrying');
    CREATE INDEX deliveries_state ON deliveries(target, state, changed_at);
    CREATE INDEX deliveries_warnings ON deliveries(target) WHERE warnings IS NOT NULL;
    CREATE INDEX deliveries_linked ON deliveries(target, remote_id) WHERE remote_id IS NOT NULL;
    CREATE INDEX deliveries_unlinked ON deliveries(target, user_id) WHERE remote_id IS NULL;
    CREATE TRIGGER delivery_counts_insert AFTER INSERT ON deliveries
    BEGIN
        INSERT INTO delivery_counts (target, state, n) VALUES (NEW.target, NEW.state, 1)
            ON CONFLICT (target, state) DO UPDATE SET n = n + 1;
    END;
    CREATE TRIGGER delivery_counts_delete AFTER DELETE ON deliveries
    BEGIN
        UPDATE delivery_counts SET n = n - 1 WHERE target = OLD.target AND state = OLD.state;
    END;
    CREATE TRIGGER delivery_counts_update AFTER UPDATE OF target, state ON deliveries
        WHEN OLD.target IS NOT NEW.target OR OLD.state IS NOT NEW.state
    BEGIN
        UPDATE delivery_counts SET n = n - 1 WHERE target = OLD.target AND state = OLD.state;
        INSERT INTO delivery_counts (target, state, n) VALUES (NEW.target, NEW.state, 1)
            ON CONFLICT (target, state) DO UPDATE SET n = n + 1;
    END;
    "#,
];

/// The schema version this build writes.
pub(crate) fn latest() -> i64 {
    MIGRATIONS.len() as i64
}

pub(crate) fn run(conn: &mut Connection) -> Result<(), LedgerError> {
    let current: i64 = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    if current > latest() {
        return Err(LedgerError::NewerSchema {
            found: current,
            supported: latest(),
        });
    }
    if current > 0 && current < latest() {
        // A migration may rebuild a large table (14 copies every delivery row): say so
        // before the wait, not only after it.
        tracing::info!(
            from = current,
            to = latest(),
            "migrating the ledger's schema; a step that rebuilds a table of millions of rows takes tens of seconds"
        );
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let began = Instant::now();
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        // PRAGMA takes no bound parameters; the value is our own integer.
        tx.execute_batch(&format!("PRAGMA user_version = {}", index + 1))?;
        tx.commit()?;
        if current > 0 {
            tracing::info!(
                version = index + 1,
                took_ms = began.elapsed().as_millis() as u64,
                "ledger schema migrated"
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrates_a_fresh_database_to_latest() {
        let mut conn = Connection::open_in_memory().unwrap();
        run(&mut conn).unwrap();
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .unwrap();
        assert_eq!(version, latest());
        // Running again is a no-op.
        run(&mut conn).unwrap();
    }

    #[test]
    fn writing_a_delivery_row_builds_no_temporary_btree_and_unknown_words_are_still_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        run(&mut conn).unwrap();
        let insert = "INSERT INTO deliveries (user_id, target, operation, payload, create_only, \
             desired_hash, mapping_version, state, next_attempt_at, changed_at, updated_at) \
             VALUES ('u1', 'kibo', ?1, '{}', '[]', 'h', 'v', ?2, 1, 1, 1)";
        let plan: Vec<String> = conn
            .prepare(&format!("EXPLAIN {insert}"))
            .unwrap()
            .query_map(["upsert", "pending"], |row| row.get(1))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert!(!plan.iter().any(|op| op == "OpenEphemeral"), "{plan:?}");
        for (operation, state) in [("create", "pending"), ("upsert", "queued")] {
            let err = conn.execute(insert, [operation, state]).unwrap_err();
            assert!(
                err.to_string().contains("CHECK"),
                "{operation} {state}: {err}"
            );
        }
        conn.execute(insert, ["upsert", "held"]).unwrap();
    }

    #[test]
    fn refuses_a_database_from_a_newer_build() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(&format!("PRAGMA user_version = {}", latest() + 1))
            .unwrap();
        let err = run(&mut conn).unwrap_err();
        assert!(matches!(err, LedgerError::NewerSchema { .. }), "{err}");
    }

    #[test]
    fn the_checked_ledger_keeps_every_row_and_refuses_unknown_words() {
        let mut conn = Connection::open_in_memory().unwrap();
        for sql in &MIGRATIONS[..6] {
            conn.execute_batch(sql).unwrap();
        }
        conn.execute_batch(
            "PRAGMA user_version = 6;
             INSERT INTO deliveries (user_id, target, operation, payload, create_only,
                 desired_hash, state, next_attempt_at, last_status, mapping_version,
                 changed_at, updated_at, failing_since, unmanaged, warnings)
             VALUES ('u1', 'kibo', 'disable', '{}', '[]', 'h', 'retrying', 9, 503, 'm1',
                 1, 2, 3, '[\"phone\"]', '[]');",
        )
        .unwrap();
        run(&mut conn).unwrap();
        let kept: (String, String, i64, i64, String, String) = conn
            .query_row(
                "SELECT operation, state, last_status, failing_since, unmanaged, warnings \
                 FROM deliveries WHERE user_id = 'u1'",
                [],
                |row| {
                    Ok((
                        row.get(0)?,
                        row.get(1)?,
                        row.get(2)?,
                        row.get(3)?,
                        row.get(4)?,
                        row.get(5)?,
                    ))
                },
            )
            .unwrap();
        assert_eq!(
            kept,
            (
                "disable".into(),
                "retrying".into(),
                503,
                3,
                "[\"phone\"]".into(),
                "[]".into()
            )
        );
        for (column, word) in [("state", "queued"), ("operation", "create")] {
            let err = conn
                .execute(
                    &format!("UPDATE deliveries SET {column} = ?1 WHERE user_id = 'u1'"),
                    [word],
                )
                .unwrap_err();
            assert!(err.to_string().contains("CHECK"), "{column}: {err}");
        }
        let indexes: Vec<String> = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'deliveries' AND name NOT LIKE 'sqlite_%' ORDER BY name")
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        // Migration 9 rebuilt the table again: the same indexes, and the guard's.
        assert_eq!(
            indexes,
            [
                "deliveries_due",
                "deliveries_linked",
                "deliveries_state",
                "deliveries_unlinked",
                "deliveries_warnings"
            ]
        );
        conn.execute(
            "UPDATE deliveries SET state = 'held' WHERE user_id = 'u1'",
            [],
        )
        .unwrap();
    }

    /// All of a table's rows, every column, in key order.
    fn rows(conn: &Connection, sql: &str) -> Vec<Vec<rusqlite::types::Value>> {
        let mut statement = conn.prepare(sql).unwrap();
        let columns = statement.column_count();
        statement
            .query_map([], |row| {
                (0..columns)
                    .map(|index| row.get(index))
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    }

    #[test]
    fn deliveries_become_a_rowid_table_with_every_row_and_count_kept() {
        let mut conn = Connection::open_in_memory().unwrap();
        for sql in &MIGRATIONS[..13] {
            conn.execute_batch(sql).unwrap();
        }
        conn.execute_batch(
            "PRAGMA user_version = 13;
             INSERT INTO deliveries (user_id, target, operation, payload, create_only,
                 password_field, secret_id, retain_secret, desired_hash, delivered_hash,
                 remote_id, state, attempts, next_attempt_at, last_status, last_error,
                 mapping_version, changed_at, updated_at, failing_since, unmanaged, warnings,
                 delivered_payload)
             VALUES
                 ('u1', 'kibo', 'upsert', '{\"a\":1}', '[]', 'password', 's1', 1, 'h2', 'h1',
                  'r1', 'pending', 0, 5, 200, NULL, 'm1', 4, 4, NULL, '[]', NULL, '{\"a\":0}'),
                 ('u1', 'appgate', 'disable', '{}', '[\"x\"]', NULL, NULL, 0, 'h3', NULL,
                  NULL, 'retrying', 2, 9, 503, 'busy', 'm1', 3, 6, 5, '[\"phone\"]',
                  '[\"mobile\"]', NULL),
                 ('u0', 'kibo', 'delete', '{}', '[]', NULL, NULL, 0, 'h4', 'h4', 'r0',
                  'delivered', 1, 1, 204, NULL, 'm0', 1, 2, NULL, '[]', NULL, NULL);",
        )
        .unwrap();
        let all_rows = "SELECT * FROM deliveries ORDER BY user_id, target";
        let all_counts = "SELECT * FROM delivery_counts ORDER BY target, state";
        let (before, counts) = (rows(&conn, all_rows), rows(&conn, all_counts));

        run(&mut conn).unwrap();

        assert_eq!(rows(&conn, all_rows), before);
        assert_eq!(rows(&conn, all_counts), counts);
        let table: String = conn
            .query_row(
                "SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = 'deliveries'",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert!(!table.contains("WITHOUT ROWID"), "{table}");
        // The key still refuses a second row for a user and target, and is what the hot
        // statements find a row by.
        let err = conn
            .execute_batch(
                "INSERT INTO deliveries (user_id, target, operation, payload, create_only,
                     desired_hash, mapping_version, state, next_attempt_at, changed_at,
                     updated_at)
                 VALUES ('u0', 'kibo', 'upsert', '{}', '[]', 'h', 'v', 'pending', 1, 1, 1)",
            )
            .unwrap_err();
        assert!(err.to_string().contains("UNIQUE"), "{err}");
        let plan: String = conn
            .query_row(
                "EXPLAIN QUERY PLAN UPDATE deliveries SET state = 'delivered' \
                 WHERE user_id = 'u1' AND target = 'kibo'",
                [],
                |row| row.get(3),
            )
            .unwrap();
        assert!(plan.contains("sqlite_autoindex_deliveries_1"), "{plan}");
        // The same indexes, and the counting triggers again.
        let names = |kind: &str| -> Vec<String> {
            conn.prepare(
                "SELECT name FROM sqlite_schema WHERE type = ?1 AND tbl_name = 'deliveries' \
                 AND name NOT LIKE 'sqlite_%' ORDER BY name",
            )
            .unwrap()
            .query_map([kind], |row| row.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
        };
        assert_eq!(
            names("index"),
            [
                "deliveries_due",
                "deliveries_linked",
                "deliveries_state",
                "deliveries_unlinked",
                "deliveries_warnings"
            ]
        );
        assert_eq!(
            names("trigger"),
            [
                "delivery_counts_delete",
                "delivery_counts_insert",
                "delivery_counts_update"
            ]
        );
        conn.execute(
            "UPDATE deliveries SET state = 'delivered' WHERE user_id = 'u1' AND target = 'kibo'",
            [],
        )
        .unwrap();
        let delivered: i64 = conn
            .query_row(
                "SELECT n FROM delivery_counts WHERE target = 'kibo' AND state = 'delivered'",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(delivered, 2);
    }
}
