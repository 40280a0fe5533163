-- Bramble image models, version 9. The Pi models an image boots, from its recipe (or a
-- built base's manifest), as a JSON array of inventory model names ("3b", "3b+", "4b",
-- "5"); '[]' for a row that predates recipes saying so, which is not checked.
ALTER TABLE images ADD COLUMN models TEXT NOT NULL DEFAULT '[]';
