"""Adapters that implement the domain's ports with boto3 and xgboost."""
