"""Independent reference implementations that tests and benchmarks compare longtail against."""
