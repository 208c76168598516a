//! Stored SCIM users and groups: intent-named queries over the `users` and `groups` tables.
//! The two tables share one shape, so one set of queries serves both kinds.

use rusqlite::{params, Connection, OptionalExtension, Row};
use serde_json::{Map, Value};

use super::sqlite::RowCounter;
use super::LedgerError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceKind {
    User,
    Group,
}

impl ResourceKind {
    fn table(self) -> &'static str {
        match self {
            ResourceKind::User => "users",
            ResourceKind::Group => "groups",
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ResourceKind::User => "User",
            ResourceKind::Group => "Group",
        }
    }

    fn parse(stored: &str) -> ResourceKind {
        if stored == "Group" {
            ResourceKind::Group
        } else {
            ResourceKind::User
        }
    }

    fn name_column(self) -> &'static str {
        match self {
            ResourceKind::User => "user_name",
            ResourceKind::Group => "display_name",
        }
    }
}

/// One stored resource. `body` holds the SCIM attributes the client set (canonical names,
/// no `id`, `meta`, derived `groups` or `members`: those live in columns and tables).
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceRow {
    pub id: String,
    pub version: i64,
    pub created: String,
    pub last_modified: String,
    pub body: Map<String, Value>,
}

/// A member of a group: a user or another group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMember {
    pub value: String,
    pub kind: ResourceKind,
    pub display: Option<String>,
}

/// The columns a resource is looked up by, kept beside its JSON.
#[derive(Debug, Clone, Default)]
pub struct Lookup {
    /// `userName` or `displayName` as given.
    pub name: String,
    pub external_id: Option<String>,
    /// Users only: every `emails.value`.
    pub emails: Vec<String>,
}

/// Intent-named access to the resource tables, over a write transaction or a read-only
/// connection.
pub struct Store<'c> {
    conn: &'c Connection,
    /// On the writer: the rows its writes changed, to add to the counters (`counts.rs`).
    counter: Option<&'c RowCounter>,
}

/// Case-insensitive lookups (userName, emails, displayName) go through this key.
pub fn fold(value: &str) -> String {
    value.to_lowercase()
}

const COLUMNS: &str = "id, version, created, last_modified, body";

fn read_row(row: &Row<'_>) -> rusqlite::Result<(String, i64, String, String, String)> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
    ))
}

fn into_resource(
    (id, version, created, last_modified, body): (String, i64, String, String, String),
) -> Result<ResourceRow, LedgerError> {
    Ok(ResourceRow {
        id,
        version,
        created,
        last_modified,
        body: serde_json::from_str(&body)?,
    })
}

impl<'c> Store<'c> {
    pub(super) fn new(conn: &'c Connection) -> Self {
        Store {
            conn,
            counter: None,
        }
    }

    /// The store of a write job: the counting triggers are off on the writer's connection,
    /// and `counter` notes what they would have counted.
    pub(super) fn on_writer(conn: &'c Connection, counter: &'c RowCounter) -> Self {
        Store {
            conn,
            counter: Some(counter),
        }
    }

    pub(super) fn counter(&self) -> Option<&'c RowCounter> {
        self.counter
    }

    /// Runs `sql` as it stands, for tests elsewhere that need the ledger in a state no
    /// build writes (a TEMP trigger that refuses a write, say).
    #[cfg(test)]
    pub(crate) fn execute_for_tests(&self, sql: &str) -> Result<(), LedgerError> {
        Ok(self.conn.execute_batch(sql)?)
    }

    pub(super) fn conn(&self) -> &'c Connection {
        self.conn
    }

    fn rows(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
    ) -> Result<Vec<ResourceRow>, LedgerError> {
        let mut stmt = self.conn.prepare_cached(sql)?;
        let raw = stmt
            .query_map(params, read_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        raw.into_iter().map(into_resource).collect()
    }

    pub(crate) fn get(
        &self,
        kind: ResourceKind,
        id: &str,
    ) -> Result<Option<ResourceRow>, LedgerError> {
        let sql = format!("SELECT {COLUMNS} FROM {} WHERE id = ?1", kind.table());
        Ok(self.rows(&sql, [id])?.pop())
    }

    /// The id of the user holding this userName (compared case-insensitively).
    pub fn user_id_by_name(&self, user_name: &str) -> Result<Option<String>, LedgerError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id FROM users WHERE user_name_key = ?1")?;
        Ok(stmt
            .query_row([fold(user_name)], |row| row.get(0))
            .optional()?)
    }

    pub(crate) fn find_by_name(
        &self,
        kind: ResourceKind,
        name: &str,
    ) -> Result<Vec<ResourceRow>, LedgerError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM {table} WHERE {column}_key = ?1 ORDER BY seq",
            table = kind.table(),
            column = kind.name_column()
        );
        self.rows(&sql, [fold(name)])
    }

    pub(crate) fn find_by_external_id(
        &self,
        kind: ResourceKind,
        external_id: &str,
    ) -> Result<Vec<ResourceRow>, LedgerError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM {} WHERE external_id = ?1 ORDER BY seq",
            kind.table()
        );
        self.rows(&sql, [external_id])
    }

    pub(crate) fn find_users_by_email(&self, email: &str) -> Result<Vec<ResourceRow>, LedgerError> {
        let sql = format!(
            "SELECT DISTINCT {cols} FROM users u JOIN user_emails e ON e.user_seq = u.seq \
             WHERE e.email_key = ?1 ORDER BY u.seq",
            cols = COLUMNS
                .split(", ")
                .map(|c| format!("u.{c}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        self.rows(&sql, [fold(email)])
    }

    pub(crate) fn count(&self, kind: ResourceKind) -> Result<u64, LedgerError> {
        let sql = format!("SELECT COUNT(*) FROM {}", kind.table());
        let mut stmt = self.conn.prepare_cached(&sql)?;
        Ok(stmt.query_row([], |row| row.get::<_, i64>(0))? as u64)
    }

    /// One page in creation order.
    pub(crate) fn page(
        &self,
        kind: ResourceKind,
        offset: u64,
        limit: u64,
    ) -> Result<Vec<ResourceRow>, LedgerError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM {} ORDER BY seq LIMIT ?1 OFFSET ?2",
            kind.table()
        );
        let clamp = |n: u64| n.min(i64::MAX as u64) as i64;
        self.rows(&sql, params![clamp(limit), clamp(offset)])
    }

    /// Up to `limit` resources created after the one at key `after` (0 before the first),
    /// in creation order, each with its key to go on from. For scans over every resource:
    /// an offset reads again every row it skips, and shifts when rows before it go.
    pub(crate) fn page_after(
        &self,
        kind: ResourceKind,
        after: i64,
        limit: u64,
    ) -> Result<Vec<(i64, ResourceRow)>, LedgerError> {
        let sql = format!(
            "SELECT {COLUMNS}, seq FROM {} WHERE seq > ?1 ORDER BY seq LIMIT ?2",
            kind.table()
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let raw = stmt
            .query_map(params![after, limit.min(i64::MAX as u64) as i64], |row| {
                Ok((row.get::<_, i64>(5)?, read_row(row)?))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        raw.into_iter()
            .map(|(key, row)| Ok((key, into_resource(row)?)))
            .collect()
    }

    /// Visits every resource of a kind in creation order without holding them all in memory.
    pub(crate) fn for_each(
        &self,
        kind: ResourceKind,
        mut visit: impl FnMut(ResourceRow) -> Result<(), LedgerError>,
    ) -> Result<(), LedgerError> {
        let sql = format!("SELECT {COLUMNS} FROM {} ORDER BY seq", kind.table());
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            visit(into_resource(read_row(row)?)?)?;
        }
        Ok(())
    }

    pub(crate) fn insert(
        &self,
        kind: ResourceKind,
        row: &ResourceRow,
        lookup: &Lookup,
    ) -> Result<(), LedgerError> {
        let sql = format!(
            "INSERT INTO {table} (id, {column}, {column}_key, external_id, version, created, \
             last_modified, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            table = kind.table(),
            column = kind.name_column()
        );
        self.conn.prepare_cached(&sql)?.execute(params![
            row.id,
            lookup.name,
            fold(&lookup.name),
            lookup.external_id,
            row.version,
            row.created,
            row.last_modified,
            serde_json::to_string(&row.body)?,
        ])?;
        // A new resource has no email rows to replace.
        self.insert_emails(kind, &row.id, lookup)
    }

    /// Replaces a stored resource; false when it does not exist.
    pub(crate) fn update(
        &self,
        kind: ResourceKind,
        row: &ResourceRow,
        lookup: &Lookup,
    ) -> Result<bool, LedgerError> {
        let sql = format!(
            "UPDATE {table} SET {column} = ?2, {column}_key = ?3, external_id = ?4, version = ?5, \
             last_modified = ?6, body = ?7 WHERE id = ?1",
            table = kind.table(),
            column = kind.name_column()
        );
        let changed = self.conn.prepare_cached(&sql)?.execute(params![
            row.id,
            lookup.name,
            fold(&lookup.name),
            lookup.external_id,
            row.version,
            row.last_modified,
            serde_json::to_string(&row.body)?,
        ])?;
        if changed == 0 {
            return Ok(false);
        }
        self.write_emails(kind, &row.id, lookup)?;
        Ok(true)
    }

    fn write_emails(
        &self,
        kind: ResourceKind,
        id: &str,
        lookup: &Lookup,
    ) -> Result<(), LedgerError> {
        if kind != ResourceKind::User {
            return Ok(());
        }
        self.conn
            .prepare_cached(
                "DELETE FROM user_emails WHERE user_seq = (SELECT seq FROM users WHERE id = ?1)",
            )?
            .execute([id])?;
        self.insert_emails(kind, id, lookup)
    }

    fn insert_emails(
        &self,
        kind: ResourceKind,
        id: &str,
        lookup: &Lookup,
    ) -> Result<(), LedgerError> {
        if kind != ResourceKind::User {
            return Ok(());
        }
        let mut insert = self.conn.prepare_cached(
            "INSERT INTO user_emails (user_seq, email_key) \
             SELECT seq, ?2 FROM users WHERE id = ?1",
        )?;
        for email in &lookup.emails {
            insert.execute(params![id, fold(email)])?;
        }
        Ok(())
    }

    /// Deletes a resource and every membership naming it; false when it does not exist.
    pub(crate) fn delete(&self, kind: ResourceKind, id: &str) -> Result<bool, LedgerError> {
        self.conn
            .prepare_cached("DELETE FROM group_members WHERE member_id = ?1")?
            .execute([id])?;
        let sql = format!("DELETE FROM {} WHERE id = ?1", kind.table());
        Ok(self.conn.prepare_cached(&sql)?.execute([id])? > 0)
    }

    pub(crate) fn members(&self, group_id: &str) -> Result<Vec<GroupMember>, LedgerError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT m.member_id, m.member_type, m.display FROM group_members m \
             JOIN groups g ON g.seq = m.group_seq WHERE g.id = ?1 ORDER BY m.rowid",
        )?;
        let members = stmt
            .query_map([group_id], |row| {
                let kind: String = row.get(1)?;
                Ok(GroupMember {
                    value: row.get(0)?,
                    kind: ResourceKind::parse(&kind),
                    display: row.get(2)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(members)
    }

    pub(crate) fn replace_members(
        &self,
        group_id: &str,
        members: &[GroupMember],
    ) -> Result<(), LedgerError> {
        self.conn
            .prepare_cached(
                "DELETE FROM group_members WHERE group_seq = (SELECT seq FROM groups WHERE id = ?1)",
            )?
            .execute([group_id])?;
        let mut insert = self.conn.prepare_cached(
            "INSERT OR IGNORE INTO group_members (group_seq, member_id, member_type, display) \
             SELECT seq, ?2, ?3, ?4 FROM groups WHERE id = ?1",
        )?;
        for member in members {
            insert.execute(params![
                group_id,
                member.value,
                member.kind.as_str(),
                member.display
            ])?;
        }
        Ok(())
    }

    /// The groups `member_id` belongs to directly, as (id, displayName).
    pub(crate) fn groups_of(&self, member_id: &str) -> Result<Vec<(String, String)>, LedgerError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT g.id, g.display_name FROM group_members m \
             JOIN groups g ON g.seq = m.group_seq WHERE m.member_id = ?1 ORDER BY g.seq",
        )?;
        let groups = stmt
            .query_map([member_id], |row| Ok((row.get(0)?, row.get(1)?)))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(groups)
    }

    /// Proves the database answers, for readiness checks.
    pub(crate) fn ping(&self) -> Result<(), LedgerError> {
        self.conn.query_row("SELECT 1", [], |_| Ok(()))?;
        Ok(())
    }

    /// Which kind of resource `id` is, if it exists.
    pub(crate) fn kind_of(&self, id: &str) -> Result<Option<ResourceKind>, LedgerError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT 'User' FROM users WHERE id = ?1 UNION ALL SELECT 'Group' FROM groups WHERE id = ?1",
        )?;
        let found: Option<String> = stmt.query_row([id], |row| row.get(0)).optional()?;
        Ok(found.as_deref().map(ResourceKind::parse))
    }
}
