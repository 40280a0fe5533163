//! The images the controller offers: one inventory entry per recipe of
//! `bramble-images`' catalogue, `recipe` until a base is built here, then `available`
//! with its version and size.

use bramble_images::{Base, Catalogue};

use crate::db::{Db, DbError};
use crate::model::Image;

/// Makes sure every built-in recipe is listed with the models it boots; leaves built
/// images otherwise as they are.
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
        if let Some(image) = known.iter().find(|i| i.name == r.name) {
            if image.models != r.models {
                db.set_image_models(&r.name, &r.models).await?;
            }
            continue;
        }
        let image = Image {
            name: r.name.clone(),
            release: r.suite.clone(),
            arch: r.arch.clone(),
            version: None,
            status: "recipe".into(),
            size_bytes: None,
            models: r.models.clone(),
        };
        db.upsert_image(&image).await?;
    }
    Ok(())
}

/// Records a built base as the available version of its image, with the models its
/// manifest says it boots (or, for a manifest written before that, its recipe's).
pub async fn register_base(db: &Db, base: &Base) -> Result<(), DbError> {
    let m = &base.manifest;
    let models = if m.models.is_empty() {
        Catalogue::builtin()
            .ok()
            .and_then(|c| c.get(&base.image).ok().map(|r| r.models.clone()))
            .unwrap_or_default()
    } else {
        m.models.clone()
    };
    let image = Image {
        name: base.image.clone(),
        release: m.suite.clone(),
        arch: m.arch.clone(),
        version: Some(base.version.clone()),
        status: "available".into(),
        size_bytes: i64::try_from(m.size_bytes).ok(),
        models,
    };
    db.upsert_image(&image).await
}
