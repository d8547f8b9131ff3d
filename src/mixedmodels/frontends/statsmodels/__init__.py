"""statsmodels front end"""
