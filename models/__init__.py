"""greenlane risk model: features, training, evaluation and scoring (issue #4)."""
