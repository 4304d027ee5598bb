from sklearn_interp.datasets import load_python_docs


def test_python_docs_are_deterministic_english_sentences():
    first = load_python_docs(n_sentences=300)
    second = load_python_docs(n_sentences=300)
    assert first.data == second.data and first.module == second.module
    assert len(set(first.data)) == 300
    for sentence in first.data:
        words = sentence.split()
        assert 5 <= len(words) <= 60 and sentence[0].isupper()
        assert ">>>" not in sentence


def test_length_bounds_are_respected():
    docs = load_python_docs(n_sentences=100, min_words=8, max_words=12)
    assert all(8 <= len(s.split()) <= 12 for s in docs.data)
