"""The domain: records, profiles, features and decisions. No AWS, no pandas, no xgboost here."""
