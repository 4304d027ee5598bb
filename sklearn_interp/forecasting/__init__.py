"""Forecasting multichannel time series, with channels clustered by similarity."""

from ._ccm import ChannelClusterForecaster, channel_cluster_loss, make_windows, rbf_channel_similarity

__all__ = ["ChannelClusterForecaster", "channel_cluster_loss", "make_windows", "rbf_channel_similarity"]
