"""The pipeline's stages, one module each: typed pure logic plus its thin KFP component."""
