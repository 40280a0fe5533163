//! SQL text built from the filters a request actually uses, so that each statement names
//! only the predicates in force and the planner can use their indexes.
//!
//! A generic `($1 IS NULL OR p.owner = $1)` is one statement for every combination of
//! filters; PostgreSQL's generic plan for it (the one a prepared statement settles on)
//! cannot know which branch holds and reads every row. Issue 14 measured a customer's
//! list costing the same with 4 Pis or 400. [`Sql`] appends a condition only when its
//! filter is set.
//!
//! **Invariant:** the text of a [`Sql`] is made only of `&'static str` fragments written
//! in this crate; every value is a bound parameter, never part of the text. Fragments
//! mark each parameter with `?`, numbered when the text is rendered: `$N` on PostgreSQL,
//! `?N` on SQLite (no fragment may contain a `?` of its own).

use sqlx::AssertSqlSafe;

use super::{Backend, Db, Query};

/// A value bound to one `?` of a fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Value {
    Text(String),
    Int(i64),
}

impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::Text(s)
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::Text(s.to_string())
    }
}

impl From<i64> for Value {
    fn from(n: i64) -> Value {
        Value::Int(n)
    }
}

/// A statement under construction: static fragments and the values of their `?`s.
#[derive(Debug, Clone)]
pub(crate) struct Sql {
    fragments: Vec<&'static str>,
    values: Vec<Value>,
    has_where: bool,
}

impl Sql {
    /// Starts with `head` (a SELECT or DELETE without WHERE; it may hold `?`s only if
    /// their values follow through [`Sql::push`], so it is taken with none).
    pub(crate) fn new(head: &'static str) -> Sql {
        Sql::check(head, 0);
        Sql { fragments: vec![head], values: Vec::new(), has_where: false }
    }

    /// Adds `condition` (with exactly one `?`, for `value`) to the WHERE clause. A
    /// condition with OR must bring its own parentheses.
    pub(crate) fn and(mut self, condition: &'static str, value: impl Into<Value>) -> Sql {
        Sql::check(condition, 1);
        self.fragments.push(if self.has_where { " AND " } else { " WHERE " });
        self.has_where = true;
        self.fragments.push(condition);
        self.values.push(value.into());
        self
    }

    /// [`Sql::and`] when the filter is set; nothing otherwise.
    pub(crate) fn and_opt<V: Into<Value>>(self, condition: &'static str, value: Option<V>) -> Sql {
        match value {
            Some(v) => self.and(condition, v),
            None => self,
        }
    }

    /// Appends `fragment` as it is (ORDER BY, LIMIT, ...), with one value per `?` in it.
    pub(crate) fn push(mut self, fragment: &'static str, values: Vec<Value>) -> Sql {
        Sql::check(fragment, values.len());
        self.fragments.push(fragment);
        self.values.extend(values);
        self
    }

    /// The statement's text for `backend`, parameters numbered in order.
    pub(crate) fn text(&self, backend: Backend) -> String {
        let mark = match backend {
            Backend::Postgres => '$',
            Backend::Sqlite => '?',
        };
        let mut out = String::new();
        let mut n = 0;
        for fragment in &self.fragments {
            for (i, piece) in fragment.split('?').enumerate() {
                if i > 0 {
                    n += 1;
                    out.push(mark);
                    out.push_str(&n.to_string());
                }
                out.push_str(piece);
            }
        }
        out
    }

    /// The bound values, in parameter order.
    pub(crate) fn values(&self) -> &[Value] {
        &self.values
    }

    /// A fragment must carry exactly as many `?` as values come with it: a mismatch is a
    /// bug in this crate's SQL, caught by any test that runs the statement.
    fn check(fragment: &'static str, values: usize) {
        let marks = fragment.matches('?').count();
        assert_eq!(marks, values, "SQL fragment {fragment:?} has {marks} `?` for {values} values");
    }
}

impl Db {
    /// The query for a built statement, with its values bound.
    pub(crate) fn query(&self, sql: &Sql) -> Query<'static> {
        bind_all(sqlx::query(AssertSqlSafe(sql.text(self.backend()))), sql.values())
    }
}

/// `q` with `values` bound in order.
pub(crate) fn bind_all(mut q: Query<'static>, values: &[Value]) -> Query<'static> {
    for value in values {
        q = match value {
            Value::Text(s) => q.bind(s.clone()),
            Value::Int(n) => q.bind(*n),
        };
    }
    q
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_filters_in_use_appear_numbered_in_order() {
        let owner: Option<String> = Some("c1".into());
        let state: Option<String> = None;
        let sql = Sql::new("SELECT id FROM pis p")
            .and_opt("p.state = ?", state)
            .and_opt("p.owner = ?", owner)
            .and("p.id > ?", "pi_1")
            .push(" ORDER BY p.id LIMIT ?", vec![Value::Int(11)]);
        assert_eq!(
            sql.text(Backend::Postgres),
            "SELECT id FROM pis p WHERE p.owner = $1 AND p.id > $2 ORDER BY p.id LIMIT $3"
        );
        assert_eq!(
            sql.text(Backend::Sqlite),
            "SELECT id FROM pis p WHERE p.owner = ?1 AND p.id > ?2 ORDER BY p.id LIMIT ?3"
        );
        assert_eq!(sql.values(), [Value::from("c1"), Value::from("pi_1"), Value::Int(11)]);
    }

    #[test]
    fn no_filter_means_no_where() {
        let sql = Sql::new("SELECT id FROM jobs").push(" LIMIT ?", vec![Value::Int(5)]);
        assert_eq!(sql.text(Backend::Postgres), "SELECT id FROM jobs LIMIT $1");
    }

    #[test]
    #[should_panic(expected = "has 0 `?` for 1 values")]
    fn a_value_without_its_mark_is_refused() {
        let _ = Sql::new("SELECT 1").and("p.owner = owner", "x");
    }
}
