"""framestamp.export"""
