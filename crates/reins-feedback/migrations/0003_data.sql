-- Project names are unique from here on, so `--project NAME` names one project. A database
-- made before may hold duplicates: they stay, only the oldest of each name takes the key
-- (NULL keys do not collide), and looking such a name up refuses and lists the ids.
ALTER TABLE projects ADD COLUMN name_key TEXT;
UPDATE projects SET name_key = name WHERE NOT EXISTS (
    SELECT 1 FROM projects o WHERE o.name = projects.name
    AND (o.created_at < projects.created_at OR (o.created_at = projects.created_at AND o.id < projects.id))
);
CREATE UNIQUE INDEX projects_name_key ON projects(name_key);
