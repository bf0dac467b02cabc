"""framestamp.benchmarks"""
