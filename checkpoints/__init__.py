"""The pretrained model shipped with charlm (shakespeare-lstm/); other folders here are your own runs."""
