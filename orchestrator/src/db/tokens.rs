//! API tokens: created, looked up by hash, revoked. The secret itself is never stored.

use sqlx::any::AnyRow;

use super::{Db, DbError, get_i64, get_opt_i64, get_opt_str, get_str};
use crate::auth::{Principal, Role, hash_token};
use crate::ids::{CustomerId, TokenId};
use crate::model::Token;
use crate::time::now_millis;

impl Db {
    /// Stores a new token for `secret` and returns its listing.
    pub async fn create_token(
        &self,
        secret: &str,
        role: Role,
        customer: Option<&CustomerId>,
        label: &str,
    ) -> Result<Token, DbError> {
        let id = TokenId::generate();
        let now = now_millis();
        self.q("INSERT INTO tokens (id, hash, role, customer, label, created_at, revoked_at) VALUES ($1, $2, $3, $4, $5, $6, NULL)")
            .bind(id.0.clone())
            .bind(hash_token(secret))
            .bind(role.as_str())
            .bind(customer.map(|c| c.0.clone()))
            .bind(label.to_string())
            .bind(now)
            .execute(self.pool())
            .await?;
        Ok(Token {
            id,
            role,
            customer: customer.cloned(),
            label: label.to_string(),
            created_at: now,
            revoked_at: None,
        })
    }

    /// Who a presented token acts as, if it is known and not revoked.
    pub async fn authenticate(&self, secret: &str) -> Result<Option<Principal>, DbError> {
        let row = self
            .q("SELECT id, hash, role, customer, label, created_at, revoked_at FROM tokens WHERE hash = $1 AND revoked_at IS NULL")
            .bind(hash_token(secret))
            .fetch_optional(self.pool())
            .await?;
        let Some(row) = row else { return Ok(None) };
        let t = token_from_row(&row)?;
        Ok(Some(match (t.role, t.customer) {
            (Role::Operator, _) => Principal::Operator { token: t.id },
            (Role::Customer, Some(customer)) => Principal::Customer { token: t.id, customer },
            (Role::Customer, None) => {
                return Err(DbError::Corrupt { column: "tokens.customer", value: "NULL".into() });
            }
        }))
    }

    pub async fn list_tokens(&self) -> Result<Vec<Token>, DbError> {
        let rows = self
            .q("SELECT id, hash, role, customer, label, created_at, revoked_at FROM tokens ORDER BY id")
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(token_from_row).collect()
    }

    /// Revokes a token; false if there is no such live token.
    pub async fn revoke_token(&self, id: &TokenId) -> Result<bool, DbError> {
        let r = self
            .q("UPDATE tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(now_millis())
            .bind(id.0.clone())
            .execute(self.pool())
            .await?;
        Ok(r.rows_affected() == 1)
    }
}

fn token_from_row(row: &AnyRow) -> Result<Token, DbError> {
    let role_text = get_str(row, "role")?;
    Ok(Token {
        id: TokenId(get_str(row, "id")?),
        role: Role::parse(&role_text)
            .ok_or(DbError::Corrupt { column: "tokens.role", value: role_text })?,
        customer: get_opt_str(row, "customer")?.map(CustomerId),
        label: get_str(row, "label")?,
        created_at: get_i64(row, "created_at")?,
        revoked_at: get_opt_i64(row, "revoked_at")?,
    })
}
