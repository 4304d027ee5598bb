"""Forecasting multichannel time series, with channels clustered by similarity."""

from ._ccm import ChannelClusterForecaster, ClusterReport, channel_cluster_loss, make_windows, rbf_channel_similarity
from ._metrics import forecast_mae, forecast_mse, neg_forecast_mae_scorer, neg_forecast_mse_scorer

__all__ = [
    "ChannelClusterForecaster",
    "ClusterReport",
    "channel_cluster_loss",
    "forecast_mae",
    "forecast_mse",
    "make_windows",
    "neg_forecast_mae_scorer",
    "neg_forecast_mse_scorer",
    "rbf_channel_similarity",
]
