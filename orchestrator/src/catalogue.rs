//! The images the controller offers: one inventory entry per recipe of
//! `bramble-images`' catalogue, `recipe` until a base is built here, then `available`
//! with its version and size.

use bramble_images::{Base, Catalogue};

use crate::db::{Db, DbError};
use crate::model::Image;

/// Makes sure every built-in recipe is listed; leaves built images as they are.
pub async fn seed(db: &Db) -> Result<(), DbError> {
    let catalogue = match Catalogue::builtin() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "built-in image recipes are unreadable; no images offered");
            return Ok(());
        }
    };
    let known = db.list_images().await?;
    for r in catalogue.iter() {
        if known.iter().any(|i| i.name == r.name) {
            continue;
        }
        let image = Image {
            name: r.name.clone(),
            release: r.suite.clone(),
            arch: r.arch.clone(),
            version: None,
            status: "recipe".into(),
            size_bytes: None,
        };
        db.upsert_image(&image).await?;
    }
    Ok(())
}

/// Records a built base as the available version of its image.
pub async fn register_base(db: &Db, base: &Base) -> Result<(), DbError> {
    let m = &base.manifest;
    let image = Image {
        name: base.image.clone(),
        release: m.suite.clone(),
        arch: m.arch.clone(),
        version: Some(base.version.clone()),
        status: "available".into(),
        size_bytes: i64::try_from(m.size_bytes).ok(),
    };
    db.upsert_image(&image).await
}
