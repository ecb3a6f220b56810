"""scikit-learn's estimator checks on fastbp.MLPRegressor and fastbp.MLPClassifier.

Every check runs and must pass; none is marked as expected to fail. The
estimators are small (a few hidden units) so the checks' tiny data sets train in
milliseconds once compiled.
"""

from __future__ import annotations

from sklearn.utils.estimator_checks import parametrize_with_checks

from fastbp.sklearn import MLPClassifier, MLPRegressor

ESTIMATORS = [
    MLPClassifier(hidden_layer_sizes=(16,), learning_rate_init=0.02, random_state=0, tol=2e-2),
    MLPRegressor(hidden_layer_sizes=(16,), learning_rate_init=0.05, random_state=0, tol=0.5),
    # fastbp's own parameters switched on (issue #13)
    MLPClassifier(
        hidden_layer_sizes=(16,),
        learning_rate_init=0.02,
        random_state=0,
        tol=2e-2,
        class_weight="balanced",
    ),
    MLPClassifier(
        hidden_layer_sizes=(16,), learning_rate_init=0.02, random_state=0, tol=2e-2, dropout=0.2
    ),
]


@parametrize_with_checks(ESTIMATORS)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
