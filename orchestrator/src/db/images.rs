//! The image catalogue as the inventory records it: what customers may choose.

use super::{Db, DbError, get_opt_i64, get_opt_str, get_str};
use crate::model::Image;
use crate::time::now_millis;

impl Db {
    pub async fn list_images(&self) -> Result<Vec<Image>, DbError> {
        let rows = self
            .q("SELECT name, release, arch, version, status, size_bytes, models FROM images ORDER BY name")
            .fetch_all(self.pool())
            .await?;
        rows.iter()
            .map(|r| {
                Ok(Image {
                    name: get_str(r, "name")?,
                    release: get_str(r, "release")?,
                    arch: get_str(r, "arch")?,
                    version: get_opt_str(r, "version")?,
                    status: get_str(r, "status")?,
                    size_bytes: get_opt_i64(r, "size_bytes")?,
                    models: serde_json::from_str(&get_str(r, "models")?).unwrap_or_default(),
                })
            })
            .collect()
    }

    /// Records an image (a known recipe, or a built base), replacing what was known.
    pub async fn upsert_image(&self, image: &Image) -> Result<(), DbError> {
        self.q("INSERT INTO images (name, release, arch, version, status, size_bytes, created_at, models) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                ON CONFLICT (name) DO UPDATE SET release = excluded.release, arch = excluded.arch, version = excluded.version, \
                status = excluded.status, size_bytes = excluded.size_bytes, models = excluded.models")
            .bind(image.name.clone())
            .bind(image.release.clone())
            .bind(image.arch.clone())
            .bind(image.version.clone())
            .bind(image.status.clone())
            .bind(image.size_bytes)
            .bind(now_millis())
            .bind(serde_json::to_string(&image.models).unwrap_or_else(|_| "[]".into()))
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Sets the models an image boots (its recipe's, which may change between releases).
    pub async fn set_image_models(&self, name: &str, models: &[String]) -> Result<(), DbError> {
        self.q("UPDATE images SET models = $1 WHERE name = $2")
            .bind(serde_json::to_string(models).unwrap_or_else(|_| "[]".into()))
            .bind(name.to_string())
            .execute(self.pool())
            .await?;
        Ok(())
    }
}
