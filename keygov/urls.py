from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_not_required
from django.urls import include, path

urlpatterns = [
    path(
        "login/",
        auth_views.LoginView.as_view(
            redirect_authenticated_user=False,
            # The login page's "Sign in with ..." button (single sign-on, docs/sso.md).
            extra_context={"sso_provider": settings.KEYGOV_OIDC_PROVIDER_NAME}
            if settings.KEYGOV_OIDC_ENABLED
            else None,
        ),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("api/", include("inventory.api.urls")),
    path("", include("inventory.urls")),
]

if settings.KEYGOV_OIDC_ENABLED:
    # Single sign-on (docs/sso.md): reached before signing in. No "oidc/logout/": /logout/ signs
    # out of keygov.
    from keygov import oidc

    urlpatterns.insert(
        0,
        path(
            "oidc/",
            include(
                [
                    path(
                        "authenticate/",
                        login_not_required(oidc.AuthenticateView.as_view()),
                        name="oidc_authentication_init",
                    ),
                    path(
                        "callback/",
                        login_not_required(oidc.CallbackView.as_view()),
                        name="oidc_authentication_callback",
                    ),
                ]
            ),
        ),
    )
