//! API tokens and who a request acts as.
//!
//! A token is `brm_` + 32 random bytes in hex. Only its SHA-256 is stored, so a
//! database leak does not leak working tokens. Operators see everything; a customer
//! token is bound to one customer and sees only that customer's Pis and jobs.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ids::{CustomerId, TokenId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Operator,
    Customer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::Customer => "customer",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "operator" => Some(Role::Operator),
            "customer" => Some(Role::Customer),
            _ => None,
        }
    }
}

/// Who a request acts as, established from its bearer token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Operator { token: TokenId },
    Customer { token: TokenId, customer: CustomerId },
}

impl Principal {
    pub fn token(&self) -> &TokenId {
        match self {
            Principal::Operator { token } | Principal::Customer { token, .. } => token,
        }
    }

    /// The customer a customer token is bound to; `None` for operators.
    pub fn customer(&self) -> Option<&CustomerId> {
        match self {
            Principal::Operator { .. } => None,
            Principal::Customer { customer, .. } => Some(customer),
        }
    }

    pub fn is_operator(&self) -> bool {
        matches!(self, Principal::Operator { .. })
    }

    /// Whether this principal may see a Pi owned by `owner`.
    pub fn may_see(&self, owner: Option<&CustomerId>) -> bool {
        match self {
            Principal::Operator { .. } => true,
            Principal::Customer { customer, .. } => owner == Some(customer),
        }
    }
}

/// A fresh secret token.
pub fn generate_token() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("brm_{}", hex::encode(bytes))
}

/// What is stored for a token.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_hashes_are_stable() {
        let a = generate_token();
        assert!(a.starts_with("brm_") && a.len() == 68);
        assert_ne!(a, generate_token());
        assert_eq!(hash_token(&a), hash_token(&a));
        assert_ne!(hash_token(&a), a);
    }

    #[test]
    fn customers_see_only_their_own() {
        let me = CustomerId("c1".into());
        let other = CustomerId("c2".into());
        let p = Principal::Customer { token: TokenId("tok-1".into()), customer: me.clone() };
        assert!(p.may_see(Some(&me)));
        assert!(!p.may_see(Some(&other)));
        assert!(!p.may_see(None));
        assert!(Principal::Operator { token: TokenId("tok-2".into()) }.may_see(None));
    }
}
