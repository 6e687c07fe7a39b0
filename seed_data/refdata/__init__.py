"""Reference data as declared state: YAML files, drift checks, generated data migrations."""
