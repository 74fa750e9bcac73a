"""The PairRanker network: an encoder backbone and a small head over three prefix-token states."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["PairRankerModel"]


class PairRankerModel(nn.Module):
    """Cross-encoder over ``[CLS] <|source|> s [SEP] [CLS] <|candidate1|> a [SEP] [CLS] <|candidate2|> b [SEP]``.

    h_s, h_1, h_2 are the last hidden states at the three prefix tokens;
    ``left = head([h_s; h_1])``, ``right = head([h_s; h_2])``, ``logit = mean_tasks(left - right)``;
    logit > 0 means candidate 1 is better. Attribute names match the checkpoints' weight names
    (``pretrained_model.*``, ``head_layer.{1,4}.*``), so state dicts load with no renaming.
    """

    def __init__(self, backbone: nn.Module, n_tasks: int = 1, drop_out: float = 0.05):
        super().__init__()
        self.pretrained_model = backbone
        hidden = backbone.config.hidden_size
        self.n_tasks = n_tasks
        self.head_layer = nn.Sequential(
            nn.Dropout(drop_out),
            nn.Linear(2 * hidden, hidden),
            nn.Tanh(),
            nn.Dropout(drop_out),
            nn.Linear(hidden, n_tasks),
        )

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, prefix_positions: torch.Tensor) -> torch.Tensor:
        """input_ids, attention_mask: [B, T]; prefix_positions: [B, 3] (source, cand1, cand2) -> logits [B]."""
        hidden = self.pretrained_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # [B, T, H]
        rows = torch.arange(hidden.shape[0], device=hidden.device)[:, None]  # [B, 1]
        states = hidden[rows, prefix_positions]  # [B, 3, H]
        h_s, h_1, h_2 = states.unbind(dim=1)  # each [B, H]
        left = self.head_layer(torch.cat([h_s, h_1], dim=-1))  # [B, n_tasks]
        right = self.head_layer(torch.cat([h_s, h_2], dim=-1))  # [B, n_tasks]
        return (left - right).mean(dim=-1)  # [B]
