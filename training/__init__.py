"""framestamp.training"""
