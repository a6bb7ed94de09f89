"""An autograded deep-learning course: build labs, grade them in a sandbox, judge outside it."""

__version__ = "0.1.0"
