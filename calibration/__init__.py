"""framestamp.calibration"""
